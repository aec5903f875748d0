#define _XOPEN_SOURCE 700
#define NCURSES_WIDECHAR 1
#include "pane_preview.h"

#include "app.h"
#include "draw.h"
#include "core/util.h"
#include "pane_overlay.h"

#include <curses.h>
#include <stdio.h>
#include <string.h>

static double num(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNumber(v) ? v->valuedouble : -1;
}

static const char *str(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static void totals(Pane *p, const char *what, double before, double after)
{
    char b[32], a[32];
    format_count(before, b, sizeof b);
    format_count(after, a, sizeof a);
    overlay_add(p, ROLE_SUMMARY, "%-8s %10s %s %-10s (%.1f%% kept)", what, b, glyphs.arrow, a,
                before > 0 ? 100 * after / before : 0);
}

static void slice_line(Pane *p, const cJSON *s)
{
    double size = num(s, "size"), removed = num(s, "removed");
    overlay_add(p, ROLE_NORMAL, "  %-10s %-30s axis %d: %5.0f %s %-5.0f (%.0f removed)",
                cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(s, "param")) ? "parameter" : "activation",
                str(s, "tensor") ? str(s, "tensor") : "?", (int)num(s, "axis"), size, glyphs.arrow, size - removed,
                removed);
}

void pane_preview_fill(Pane *p, const cJSON *result, double est_accuracy, double accuracy)
{
    overlay_clear(p);
    const cJSON *slices = cJSON_GetObjectItemCaseSensitive(result, "slices"), *s, *t;
    int n = cJSON_GetArraySize(slices);
    char title[128];
    snprintf(title, sizeof title, "preview: %d units, %d tensor slices", (int)num(result, "units"), n);
    overlay_set_title(p, title, " a / Enter: apply    Esc: close    arrows: scroll");
    totals(p, "params", num(result, "params_before"), num(result, "params_after"));
    totals(p, "MACs", num(result, "macs_before"), num(result, "macs_after"));
    if (accuracy >= 0 && est_accuracy >= 0)
        overlay_add(p, ROLE_SUMMARY, "%-8s %9.2f%% %s %s%.2f%% (sum of the measured sensitivity drops)", "accuracy",
                    100 * accuracy, glyphs.arrow, glyphs.approx, 100 * est_accuracy);
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(result, "estimate");
    if (e) /* measured by preview on validation samples, before any fine-tuning */
        overlay_add(p, ROLE_SUMMARY, "%-8s loss %.4f %s %.4f, accuracy %.2f%% %s %.2f%% (%d %s samples, no fine-tuning)",
                    "estimate", num(e, "loss_before"), glyphs.arrow, num(e, "loss_after"), 100 * num(e, "accuracy_before"),
                    glyphs.arrow, 100 * num(e, "accuracy_after"), (int)num(e, "samples"), str(e, "split") ? str(e, "split") : "");
    overlay_add(p, ROLE_NORMAL, "%s", "");
    /* by layer, in the order layers first appear */
    cJSON_ArrayForEach(s, slices)
    {
        const char *layer = str(s, "layer"), *block = str(s, "block_add");
        if (block) {
            overlay_add(p, ROLE_HEADER, "block ending at %s: its branch goes, the Add passes the skip on", block);
            continue;
        }
        if (!layer)
            continue;
        bool first = true; /* print a layer once, at its first slice */
        cJSON_ArrayForEach(t, slices)
        {
            if (t == s)
                break;
            if (str(t, "layer") && !strcmp(str(t, "layer"), layer))
                first = false;
        }
        if (!first)
            continue;
        overlay_add(p, ROLE_HEADER, "layer %s", layer);
        cJSON_ArrayForEach(t, slices) if (str(t, "layer") && !strcmp(str(t, "layer"), layer)) slice_line(p, t);
    }
    bool header = false;
    cJSON_ArrayForEach(s, slices)
    {
        if (str(s, "layer") || str(s, "block_add"))
            continue;
        if (!header)
            overlay_add(p, ROLE_HEADER, "activations and other tensors");
        header = true;
        slice_line(p, s);
    }
}

static bool preview_key(Pane *p, App *app, int key)
{
    if (key == 'a' || key == '\n' || key == KEY_ENTER) {
        app->overlay = OVERLAY_NONE;
        app_submit(app, "apply", false);
        return true;
    }
    return overlay_scroll_key(p, key);
}

static const PaneClass preview_class = {
    .name = "preview", .draw = overlay_draw, .on_key = preview_key, .done = overlay_done,
};

Pane *pane_preview_new(void) { return pane_overlay_new(&preview_class); }

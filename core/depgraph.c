/* Dependency groups (see depgraph.h). Atoms are channels; two union-finds
 * over them: units (atoms that must be removed together) and groups
 * (units that share producers). */
#include "depgraph.h"

#include "error.h"
#include "op.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum AtomKind { ATOM_PRODUCED, ATOM_CONST, ATOM_INPUT };

typedef struct {
    int value, axis;
    int64_t size;
    int *atom; /* size entries, -1 for none */
} Space;

typedef struct {
    const Graph *g;
    Space *spaces;
    int n_spaces, cap_spaces;
    int *space_of; /* value * SH_MAX_RANK + axis -> space, -1 */
    /* atoms */
    int *unit_parent, *group_parent;
    unsigned char *kind;
    int *blocked;  /* reason index + 1, 0 if not blocked */
    int *approx;   /* reason index + 1 */
    int *producer; /* node that produced the atom, -1 */
    int n_atoms, cap_atoms;
    char **reasons;
    int n_reasons;
} Builder;

struct CouplingCtx {
    Builder *b;
    const Node *n;
    int node_index;
    unsigned touched[64]; /* bit axis: input i's axis was coupled by the rule */
};

/* ---- union-find ---- */

static int uf_find(int *parent, int a)
{
    while (parent[a] != a) {
        parent[a] = parent[parent[a]];
        a = parent[a];
    }
    return a;
}

static void uf_union(int *parent, int a, int b)
{
    a = uf_find(parent, a);
    b = uf_find(parent, b);
    if (a != b)
        parent[a < b ? b : a] = a < b ? a : b; /* the older atom stays the root */
}

static int new_atom(Builder *b, enum AtomKind kind, int producer)
{
    if (b->n_atoms == b->cap_atoms) {
        int cap = b->cap_atoms ? b->cap_atoms * 2 : 1024;
        b->unit_parent = xrealloc(b->unit_parent, sizeof(int) * (size_t)cap);
        b->group_parent = xrealloc(b->group_parent, sizeof(int) * (size_t)cap);
        b->kind = xrealloc(b->kind, (size_t)cap);
        b->blocked = xrealloc(b->blocked, sizeof(int) * (size_t)cap);
        b->approx = xrealloc(b->approx, sizeof(int) * (size_t)cap);
        b->producer = xrealloc(b->producer, sizeof(int) * (size_t)cap);
        b->cap_atoms = cap;
    }
    int a = b->n_atoms++;
    b->unit_parent[a] = b->group_parent[a] = a;
    b->kind[a] = (unsigned char)kind;
    b->blocked[a] = b->approx[a] = 0;
    b->producer[a] = producer;
    return a;
}

static void unify(Builder *b, int x, int y)
{
    if (x < 0 || y < 0)
        return;
    uf_union(b->unit_parent, x, y);
    uf_union(b->group_parent, x, y);
}

static int add_reason(Builder *b, const char *text)
{
    for (int i = 0; i < b->n_reasons; i++)
        if (strcmp(b->reasons[i], text) == 0)
            return i + 1;
    b->reasons = xrealloc(b->reasons, sizeof(char *) * (size_t)(b->n_reasons + 1));
    b->reasons[b->n_reasons++] = xstrdup(text);
    return b->n_reasons;
}

/* ---- spaces ---- */

static Space *space_get(Builder *b, int v, int axis)
{
    if (v < 0 || axis < 0 || axis >= SH_MAX_RANK)
        return NULL;
    int s = b->space_of[v * SH_MAX_RANK + axis];
    return s >= 0 ? &b->spaces[s] : NULL;
}

static const Shape *value_shape(const Builder *b, int v)
{
    const Value *val = &b->g->values[v];
    return val->data ? &val->data->shape : &val->shape;
}

/* Creates the space (all atoms -1) if its size is known. */
static Space *space_make(Builder *b, int v, int axis)
{
    Space *s = space_get(b, v, axis);
    if (s)
        return s;
    const Shape *sh = value_shape(b, v);
    if (axis >= sh->rank || sh->d[axis] < 0)
        return NULL;
    grow_array((void **)&b->spaces, &b->cap_spaces, b->n_spaces + 1, sizeof *b->spaces);
    s = &b->spaces[b->n_spaces];
    s->value = v;
    s->axis = axis;
    s->size = sh->d[axis];
    s->atom = xmalloc(sizeof(int) * (size_t)(s->size ? s->size : 1));
    for (int64_t i = 0; i < s->size; i++)
        s->atom[i] = -1;
    b->space_of[v * SH_MAX_RANK + axis] = b->n_spaces++;
    return s;
}

/* Spaces are addressed by index: creating one may move the array, so a
 * pointer is only taken after every space a rule needs exists. */
#define SP(b, i) (&(b)->spaces[i])

/* The space of input i's axis (-1 if none); constants get placeholder
 * atoms on first use. */
static int in_space(CouplingCtx *cc, int i, int axis)
{
    const Node *n = cc->n;
    if (i < 0 || i >= n->n_in || n->in[i] < 0 || axis < 0 || axis >= SH_MAX_RANK)
        return -1;
    if (i < 64 && axis < 32)
        cc->touched[i] |= 1u << axis;
    int v = n->in[i];
    Space *s = space_get(cc->b, v, axis);
    if (!s && (cc->b->g->values[v].flags & VAL_CONST) && cc->b->g->values[v].data &&
        cc->b->g->values[v].data->dtype == SH_F32 && (s = space_make(cc->b, v, axis)))
        for (int64_t k = 0; k < s->size; k++)
            s->atom[k] = new_atom(cc->b, ATOM_CONST, -1);
    return s ? (int)(s - cc->b->spaces) : -1;
}

static int out_space(CouplingCtx *cc, int o, int axis)
{
    if (o < 0 || o >= cc->n->n_out || cc->n->out[o] < 0)
        return -1;
    Space *s = space_make(cc->b, cc->n->out[o], axis);
    return s ? (int)(s - cc->b->spaces) : -1;
}

static bool has_produced(const Builder *b, const Space *s)
{
    for (int64_t i = 0; s && i < s->size; i++)
        if (s->atom[i] >= 0 && b->kind[uf_find((int *)b->group_parent, s->atom[i])] != ATOM_CONST)
            return true;
    return false;
}

static void block_space(Builder *b, const Space *s, const char *why)
{
    int r = add_reason(b, why);
    for (int64_t i = 0; s && i < s->size; i++)
        if (s->atom[i] >= 0 && !b->blocked[s->atom[i]])
            b->blocked[s->atom[i]] = r;
}

/* ---- the rule API ---- */

const Node *cc_node(const CouplingCtx *cc) { return cc->n; }

int cc_opset(const CouplingCtx *cc) { return cc->b->g->opset; }

const Shape *cc_in_shape(const CouplingCtx *cc, int i) { return value_shape(cc->b, cc->n->in[i]); }

const Shape *cc_out_shape(const CouplingCtx *cc, int i) { return value_shape(cc->b, cc->n->out[i]); }

bool cc_has_input(const CouplingCtx *cc, int i) { return i < cc->n->n_in && cc->n->in[i] >= 0; }

const Tensor *cc_in_const(const CouplingCtx *cc, int i)
{
    if (!cc_has_input(cc, i))
        return NULL;
    const Value *v = &cc->b->g->values[cc->n->in[i]];
    return (v->flags & VAL_CONST) ? v->data : NULL;
}

static void fail_rule(CouplingCtx *cc, const char *what)
{
    char why[512];
    snprintf(why, sizeof why, "node '%s' (%s): %s", cc->n->name, cc->n->op_type, what);
    for (int i = 0; i < cc->n->n_in; i++)
        for (int a = 0; a < SH_MAX_RANK; a++)
            block_space(cc->b, space_get(cc->b, cc->n->in[i], a), why);
}

bool cc_out_has_channels(CouplingCtx *cc, int out, int axis)
{
    if (out < 0 || out >= cc->n->n_out || cc->n->out[out] < 0)
        return false;
    return has_produced(cc->b, space_get(cc->b, cc->n->out[out], axis));
}

static bool shape_value_editable(const Graph *g, int v, int64_t k)
{
    const Value *val = &g->values[v];
    if ((val->flags & VAL_CONST) && val->data)
        return val->data->dtype == SH_I64 && k < val->data->numel;
    if (val->producer < 0 || strcmp(g->nodes[val->producer].op_type, "Concat"))
        return false;
    const Node *n = &g->nodes[val->producer];
    int64_t off = 0;
    for (int i = 0; i < n->n_in; i++) {
        int piece = n->in[i];
        int64_t len = piece >= 0 && g->values[piece].shape.rank == 1 ? g->values[piece].shape.d[0] : -1;
        if (len < 0)
            return false;
        if (k < off + len)
            return shape_value_editable(g, piece, k - off);
        off += len;
    }
    return false;
}

bool cc_shape_element_editable(const CouplingCtx *cc, int in, int64_t k)
{
    if (!cc_has_input(cc, in))
        return false;
    return shape_value_editable(cc->b->g, cc->n->in[in], k);
}

void cc_same(CouplingCtx *cc, int in, int in_axis, int out, int out_axis)
{
    int i = in_space(cc, in, in_axis);
    if (i < 0)
        return;
    int o = out_space(cc, out, out_axis);
    const Space *si = SP(cc->b, i);
    if (o < 0 || SP(cc->b, o)->size != si->size) {
        if (has_produced(cc->b, si))
            fail_rule(cc, "an output axis that carries channels has an unknown or different size");
        return;
    }
    Space *so = SP(cc->b, o);
    for (int64_t k = 0; k < si->size; k++) {
        if (so->atom[k] < 0)
            so->atom[k] = si->atom[k];
        else
            unify(cc->b, so->atom[k], si->atom[k]);
    }
}

void cc_join(CouplingCtx *cc, int in_a, int axis_a, int in_b, int axis_b)
{
    int ia = in_space(cc, in_a, axis_a), ib = in_space(cc, in_b, axis_b);
    if (ia < 0 || ib < 0 || SP(cc->b, ia)->size != SP(cc->b, ib)->size)
        return; /* a broadcast operand of size 1 joins nothing */
    const Space *a = SP(cc->b, ia), *b = SP(cc->b, ib);
    for (int64_t k = 0; k < a->size; k++)
        unify(cc->b, a->atom[k], b->atom[k]);
}

void cc_produce(CouplingCtx *cc, int out, int out_axis)
{
    int o = out_space(cc, out, out_axis);
    if (o < 0)
        return;
    int first = -1;
    for (int64_t k = 0; k < SP(cc->b, o)->size; k++) {
        int a = new_atom(cc->b, ATOM_PRODUCED, cc->node_index);
        Space *so = SP(cc->b, o);
        if (so->atom[k] >= 0)
            unify(cc->b, a, so->atom[k]);
        so->atom[k] = a;
        if (first < 0)
            first = a;
        else /* one producer's channels form one group */
            uf_union(cc->b->group_parent, first, a);
    }
}

void cc_map(CouplingCtx *cc, int in, int in_axis, int out, int out_axis, const int64_t *map)
{
    int i = in_space(cc, in, in_axis);
    if (i < 0)
        return;
    int o = out_space(cc, out, out_axis);
    const Space *si = SP(cc->b, i);
    if (o < 0) {
        if (has_produced(cc->b, si))
            fail_rule(cc, "an output axis that carries channels has an unknown size");
        return;
    }
    Space *so = SP(cc->b, o);
    for (int64_t j = 0; j < so->size; j++) {
        if (map[j] < 0 || map[j] >= si->size)
            continue;
        int a = si->atom[map[j]];
        if (so->atom[j] < 0)
            so->atom[j] = a;
        else
            unify(cc->b, so->atom[j], a);
    }
}

void cc_merge_blocks(CouplingCtx *cc, int in, int in_axis, int64_t width, int out, int out_axis)
{
    int i = in_space(cc, in, in_axis);
    if (i < 0 || width < 1 || SP(cc->b, i)->size % width)
        return;
    for (int64_t k = 0; k < SP(cc->b, i)->size; k++)
        if (k % width)
            unify(cc->b, SP(cc->b, i)->atom[k - k % width], SP(cc->b, i)->atom[k]);
    int o = out_space(cc, out, out_axis);
    const Space *si = SP(cc->b, i);
    if (o < 0 || SP(cc->b, o)->size != si->size / width)
        return;
    Space *so = SP(cc->b, o);
    for (int64_t j = 0; j < so->size; j++) {
        if (so->atom[j] < 0)
            so->atom[j] = si->atom[j * width];
        else
            unify(cc->b, so->atom[j], si->atom[j * width]);
    }
}

void cc_group_units(CouplingCtx *cc, int in, int in_axis, int out, int out_axis, int64_t n)
{
    int i = in_space(cc, in, in_axis), o = out_space(cc, out, out_axis);
    if (i < 0 || o < 0 || n < 1 || SP(cc->b, i)->size % n || SP(cc->b, o)->size % n)
        return;
    const Space *si = SP(cc->b, i), *so = SP(cc->b, o);
    int64_t wi = si->size / n, wo = so->size / n;
    for (int64_t gi = 0; gi < n; gi++) {
        int root = si->atom[gi * wi] >= 0 ? si->atom[gi * wi] : so->atom[gi * wo];
        for (int64_t k = 0; k < wi; k++)
            unify(cc->b, root, si->atom[gi * wi + k]);
        for (int64_t k = 0; k < wo; k++)
            unify(cc->b, root, so->atom[gi * wo + k]);
    }
}

void cc_consume(CouplingCtx *cc, int in, int in_axis) { (void)in_space(cc, in, in_axis); }

void cc_approx(CouplingCtx *cc, int in, int in_axis, const char *why)
{
    int i = in_space(cc, in, in_axis);
    const Space *s = i >= 0 ? SP(cc->b, i) : NULL;
    char text[512];
    snprintf(text, sizeof text, "node '%s' (%s) %s", cc->n->name, cc->n->op_type, why);
    int r = add_reason(cc->b, text);
    for (int64_t k = 0; s && k < s->size; k++)
        if (s->atom[k] >= 0 && !cc->b->approx[s->atom[k]])
            cc->b->approx[s->atom[k]] = r;
}

void cc_block(CouplingCtx *cc, const char *why) { fail_rule(cc, why); }

void cc_merge_axes(CouplingCtx *cc, int in, int a0, int a1, int out, int out_axis)
{
    const Shape *s = cc_in_shape(cc, in);
    int carrier = -1;
    for (int a = a0; a < a1; a++) {
        bool carries = has_produced(cc->b, space_get(cc->b, cc->n->in[in], a));
        cc_consume(cc, in, a); /* may create spaces: no pointer is held across it */
        if (carries) {
            if (carrier >= 0) {
                cc_block(cc, "merges two axes that both carry channels");
                return;
            }
            carrier = a;
        }
    }
    if (carrier < 0)
        return;
    int64_t inner = 1, total = 1;
    for (int a = a0; a < a1; a++) {
        if (s->d[a] < 0) {
            cc_block(cc, "merges channels with an axis of unknown size");
            return;
        }
        total *= s->d[a];
        if (a > carrier)
            inner *= s->d[a];
    }
    int64_t *map = xmalloc(sizeof *map * (size_t)(total ? total : 1));
    for (int64_t f = 0; f < total; f++)
        map[f] = (f / inner) % s->d[carrier];
    cc_map(cc, in, carrier, out, out_axis, map);
    free(map);
}

void cc_split_axis(CouplingCtx *cc, int in, int in_axis, int out, int o0, int o1)
{
    const Shape *o = cc_out_shape(cc, out);
    int64_t width = 1;
    for (int a = o0 + 1; a < o1; a++)
        width *= o->d[a] > 0 ? o->d[a] : 0;
    if (width < 1)
        return;
    cc_merge_blocks(cc, in, in_axis, width, out, o0);
}

int couple_unary(CouplingCtx *cc)
{
    const Shape *s = cc_in_shape(cc, 0);
    for (int a = 0; a < s->rank; a++)
        cc_same(cc, 0, a, 0, a);
    for (int i = 1; i < cc->n->n_in; i++) /* scalar parameters (Clip bounds, ratios) */
        for (int a = 0; cc_has_input(cc, i) && a < cc_in_shape(cc, i)->rank; a++)
            cc_consume(cc, i, a);
    return 0;
}

int couple_pointwise(CouplingCtx *cc)
{
    const Shape *o = cc_out_shape(cc, 0);
    for (int i = 0; i < cc->n->n_in; i++) {
        if (!cc_has_input(cc, i))
            continue;
        const Shape *s = cc_in_shape(cc, i);
        for (int a = 0; a < s->rank; a++) {
            int oa = a + (o->rank - s->rank);
            if (oa >= 0 && s->d[a] == o->d[oa] && s->d[a] != 1)
                cc_same(cc, i, a, 0, oa);
            else
                cc_consume(cc, i, a); /* a broadcast axis of size 1 */
        }
    }
    return 0;
}

/* ---- building ---- */

static void seed_inputs(Builder *b)
{
    for (int i = 0; i < b->g->n_inputs; i++) {
        int v = b->g->inputs[i];
        const Shape *s = value_shape(b, v);
        for (int axis = 1; axis < s->rank; axis++) { /* axis 0 is the batch */
            Space *sp = space_make(b, v, axis);
            for (int64_t k = 0; sp && k < sp->size; k++)
                sp->atom[k] = new_atom(b, ATOM_INPUT, -1);
        }
    }
}

/* After a rule: channels the rule did not account for block their groups. */
static void check_untouched(CouplingCtx *cc)
{
    const Node *n = cc->n;
    for (int i = 0; i < n->n_in; i++) {
        if (n->in[i] < 0)
            continue;
        for (int a = 0; a < SH_MAX_RANK; a++) {
            Space *s = space_get(cc->b, n->in[i], a);
            if (!s || (i < 64 && a < 32 && (cc->touched[i] & (1u << a))) || !has_produced(cc->b, s))
                continue;
            char why[512];
            snprintf(why, sizeof why,
                     n->op->coupling ? "node '%s' (%s) reads the channels of '%s' on axis %d in a way shears cannot follow"
                                     : "node '%s' uses op %s, whose channel coupling shears does not know",
                     n->name, n->op_type, cc->b->g->values[n->in[i]].name, a);
            block_space(cc->b, s, why);
        }
    }
}

static void run_rules(Builder *b)
{
    for (int i = 0; i < b->g->n_nodes; i++) {
        const Node *n = &b->g->nodes[i];
        CouplingCtx cc = {.b = b, .n = n, .node_index = i};
        if (n->op && n->op->coupling)
            n->op->coupling(&cc);
        check_untouched(&cc);
    }
}

/* Channels of a graph output are the model's interface (its classes). */
static void block_outputs(Builder *b)
{
    for (int k = 0; k < b->g->n_outputs; k++) {
        int v = b->g->outputs[k];
        for (int a = 0; a < SH_MAX_RANK; a++) {
            char why[512];
            snprintf(why, sizeof why, "its channels reach the graph output '%s'", b->g->values[v].name);
            block_space(b, space_get(b, v, a), why);
        }
    }
}

/* ---- groups from atoms ---- */

typedef struct {
    int group, space, unit;
    int64_t index;
} Entry;

static int cmp_entry(const void *pa, const void *pb)
{
    const Entry *a = pa, *b = pb;
    if (a->group != b->group)
        return a->group - b->group;
    if (a->space != b->space)
        return a->space - b->space;
    if (a->unit != b->unit)
        return a->unit - b->unit;
    return a->index < b->index ? -1 : a->index > b->index;
}

typedef struct {
    bool produced, input, any;
    int blocked, approx;  /* reason + 1 */
    int input_value;      /* a model input joined with the group */
    int first_producer;   /* node */
    int first_atom;       /* smallest produced atom */
    int index;            /* group number, -1 if not listed */
    int n_units;
} RootInfo;

static void scan_roots(Builder *b, RootInfo *info)
{
    for (int a = 0; a < b->n_atoms; a++) {
        info[a] = (RootInfo){.index = -1, .input_value = -1, .first_producer = -1, .first_atom = -1};
    }
    for (int a = 0; a < b->n_atoms; a++) {
        RootInfo *r = &info[uf_find(b->group_parent, a)];
        r->any = true;
        if (b->kind[a] == ATOM_PRODUCED) {
            r->produced = true;
            if (r->first_atom < 0 || a < r->first_atom) {
                r->first_atom = a;
                r->first_producer = b->producer[a];
            }
        }
        if (b->kind[a] == ATOM_INPUT)
            r->input = true;
        if (b->blocked[a] && !r->blocked)
            r->blocked = b->blocked[a];
        if (b->approx[a] && !r->approx)
            r->approx = b->approx[a];
    }
    for (int s = 0; s < b->n_spaces; s++) /* name the model input a group is joined with */
        for (int64_t k = 0; k < b->spaces[s].size; k++) {
            int a = b->spaces[s].atom[k];
            if (a >= 0 && b->kind[a] == ATOM_INPUT) {
                RootInfo *r = &info[uf_find(b->group_parent, a)];
                if (r->input_value < 0)
                    r->input_value = b->spaces[s].value;
            }
        }
}

/* Entries (group, space, unit, index) for every channel of a listed group;
 * groups numbered by their first producer, units by first appearance. */
static Entry *collect_entries(Builder *b, RootInfo *info, int *n_groups, int64_t *n_entries)
{
    int *unit_of = xmalloc(sizeof(int) * (size_t)(b->n_atoms + 1));
    for (int a = 0; a < b->n_atoms; a++)
        unit_of[a] = -1;
    /* number groups in order of their first produced channel (atoms are
     * created in node order) */
    int ng = 0;
    for (int a = 0; a < b->n_atoms; a++) {
        RootInfo *r = &info[uf_find(b->group_parent, a)];
        if (r->produced && r->index < 0 && r->first_atom == a)
            r->index = ng++;
    }
    Entry *e = NULL;
    int64_t n = 0, cap = 0;
    for (int s = 0; s < b->n_spaces; s++)
        for (int64_t k = 0; k < b->spaces[s].size; k++) {
            int a = b->spaces[s].atom[k];
            if (a < 0)
                continue;
            RootInfo *r = &info[uf_find(b->group_parent, a)];
            if (r->index < 0)
                continue;
            int u = uf_find(b->unit_parent, a);
            if (unit_of[u] < 0)
                unit_of[u] = r->n_units++;
            if (n == cap) {
                cap = cap ? cap * 2 : 4096;
                e = xrealloc(e, sizeof *e * (size_t)cap);
            }
            e[n++] = (Entry){.group = r->index, .space = s, .unit = unit_of[u], .index = k};
        }
    if (n > 0)
        qsort(e, (size_t)n, sizeof *e, cmp_entry);
    free(unit_of);
    *n_groups = ng;
    *n_entries = n;
    return e;
}

static void fill_member(GroupMember *m, const Builder *b, const Entry *e, int64_t count, int n_units)
{
    const Space *s = &b->spaces[e[0].space];
    m->value = s->value;
    m->axis = s->axis;
    m->param = (b->g->values[s->value].flags & VAL_CONST) != 0;
    m->size = s->size;
    m->start = xcalloc((size_t)n_units + 1, sizeof *m->start);
    m->idx = xmalloc(sizeof *m->idx * (size_t)count);
    for (int64_t i = 0; i < count; i++) {
        m->idx[i] = e[i].index;
        m->start[e[i].unit + 1]++;
    }
    for (int u = 0; u < n_units; u++)
        m->start[u + 1] += m->start[u];
}

static GroupKind group_kind(const Graph *g, const Group *grp, bool approx)
{
    const char *op = grp->n_producers ? g->nodes[grp->producers[0]].op_type : "";
    if (grp->unit_width > 1 && (!strcmp(op, "MatMul") || !strcmp(op, "Gemm")))
        return GROUP_HEADS;
    if (!strcmp(op, "Conv") || !strcmp(op, "ConvTranspose"))
        return GROUP_CHANNELS;
    if (approx && grp->n_producers > 2)
        return GROUP_WIDTH;
    return GROUP_NEURONS;
}

static void finish_group(Group *grp, const Builder *b, const RootInfo *r)
{
    const Graph *g = b->g;
    grp->name = xstrdup(r->first_producer >= 0 ? g->nodes[r->first_producer].name : "?");
    grp->n_units = r->n_units;
    /* producers: nodes whose produced atoms are in the group */
    bool *seen = xcalloc((size_t)g->n_nodes + 1, sizeof *seen);
    for (int a = 0; a < b->n_atoms; a++)
        if (b->kind[a] == ATOM_PRODUCED && b->producer[a] >= 0 &&
            uf_find((int *)b->group_parent, a) == uf_find((int *)b->group_parent, r->first_atom))
            seen[b->producer[a]] = true;
    for (int i = 0; i < g->n_nodes; i++)
        if (seen[i]) {
            grp->producers = xrealloc(grp->producers, sizeof(int) * (size_t)(grp->n_producers + 1));
            grp->producers[grp->n_producers++] = i;
        }
    free(seen);
    /* unit width: channels per unit in the first producer's output */
    grp->unit_width = 1;
    for (int m = 0; m < grp->n_members; m++) {
        const GroupMember *gm = &grp->members[m];
        const Value *v = &g->values[gm->value];
        if (v->producer == r->first_producer && grp->n_units > 0) {
            grp->unit_width = (gm->start[grp->n_units]) / grp->n_units;
            break;
        }
    }
    if (r->blocked) {
        grp->blocked = true;
        grp->blocked_reason = xstrdup(b->reasons[r->blocked - 1]);
    } else if (r->input) {
        grp->blocked = true;
        grp->blocked_reason = xasprintf("its channels are joined with the model input '%s'",
                                        r->input_value >= 0 ? g->values[r->input_value].name : "?");
    } else if (grp->n_units < 2) {
        grp->blocked = true;
        grp->blocked_reason = xstrdup("it has a single unit (a layer is never left with none)");
    }
    if (r->approx) {
        grp->approximate = true;
        grp->approx_reason = xstrdup(b->reasons[r->approx - 1]);
    }
    grp->kind = group_kind(g, grp, r->approx != 0);
}

static void build_groups(Builder *b, DepGraph *dg)
{
    RootInfo *info = xmalloc(sizeof *info * (size_t)(b->n_atoms + 1));
    scan_roots(b, info);
    int ng;
    int64_t n;
    Entry *e = collect_entries(b, info, &ng, &n);
    dg->n_groups = ng;
    dg->groups = xcalloc((size_t)ng + 1, sizeof *dg->groups);
    const RootInfo **root_of = xcalloc((size_t)ng + 1, sizeof *root_of);
    for (int a = 0; a < b->n_atoms; a++)
        if (uf_find(b->group_parent, a) == a && info[a].index >= 0)
            root_of[info[a].index] = &info[a];
    for (int64_t i = 0; i < n;) {
        Group *grp = &dg->groups[e[i].group];
        grp->id = e[i].group;
        int64_t j = i;
        while (j < n && e[j].group == e[i].group && e[j].space == e[i].space)
            j++;
        grp->members = xrealloc(grp->members, sizeof *grp->members * (size_t)(grp->n_members + 1));
        fill_member(&grp->members[grp->n_members++], b, e + i, j - i, root_of[e[i].group]->n_units);
        i = j;
    }
    for (int k = 0; k < ng; k++)
        finish_group(&dg->groups[k], b, root_of[k]);
    free(root_of);
    free(e);
    free(info);
}

/* ---- residual blocks ---- */

/* Marks the nodes on a path from value `from` to node `to` (inclusive):
 * the ancestors of `to` that descend from `from`. Returns false if `from`
 * is not an ancestor of `to`. */
static bool branch_nodes(const Graph *g, int from, int to, bool *in_branch)
{
    /* ancestors of `to` */
    bool *anc = xcalloc((size_t)g->n_nodes + 1, sizeof *anc);
    anc[to] = true;
    for (int i = to; i >= 0; i--) {
        if (!anc[i])
            continue;
        for (int k = 0; k < g->nodes[i].n_in; k++) {
            int v = g->nodes[i].in[k];
            if (v >= 0 && g->values[v].producer >= 0)
                anc[g->values[v].producer] = true;
        }
    }
    /* descendants of `from` among them */
    bool *reach = xcalloc((size_t)g->n_values + 1, sizeof *reach);
    reach[from] = true;
    bool found = false;
    for (int i = 0; i <= to; i++) {
        bool reads = false;
        for (int k = 0; k < g->nodes[i].n_in; k++)
            reads = reads || (g->nodes[i].in[k] >= 0 && reach[g->nodes[i].in[k]]);
        if (!reads)
            continue;
        for (int k = 0; k < g->nodes[i].n_out; k++)
            if (g->nodes[i].out[k] >= 0)
                reach[g->nodes[i].out[k]] = true;
        if (anc[i]) {
            in_branch[i] = true;
            found = true;
        }
    }
    free(anc);
    free(reach);
    return found;
}

/* A branch can go if nothing outside it reads its values. */
static bool branch_closed(const Graph *g, const bool *in_branch, int add)
{
    for (int i = 0; i < g->n_nodes; i++) {
        if (in_branch[i] || i == add)
            continue;
        for (int k = 0; k < g->nodes[i].n_in; k++) {
            int v = g->nodes[i].in[k];
            if (v >= 0 && g->values[v].producer >= 0 && in_branch[g->values[v].producer])
                return false;
        }
    }
    for (int k = 0; k < g->n_outputs; k++) {
        int p = g->values[g->outputs[k]].producer;
        if (p >= 0 && in_branch[p])
            return false;
    }
    return true;
}

int residual_skip_input(const Graph *g, int add)
{
    const Node *n = &g->nodes[add];
    if (strcmp(n->op_type, "Add") || n->n_in != 2 || n->in[0] < 0 || n->in[1] < 0)
        return -1;
    const Value *out = &g->values[n->out[0]];
    for (int skip = 0; skip < 2; skip++) {
        int s = n->in[skip], b = n->in[1 - skip];
        const Value *sv = &g->values[s], *bv = &g->values[b];
        if ((sv->flags & VAL_CONST) || bv->producer < 0 || !shape_eq(&sv->shape, &out->shape) ||
            !shape_eq(&bv->shape, &out->shape))
            continue;
        bool *in_branch = xcalloc((size_t)g->n_nodes + 1, sizeof *in_branch);
        bool ok = branch_nodes(g, s, bv->producer, in_branch) && branch_closed(g, in_branch, add);
        free(in_branch);
        if (ok)
            return skip;
    }
    return -1;
}

/* The part of a node name before its last '.' or '/' ("block2" of
 * "block2.add1", "/layers.0" of "/layers.0/Add_1"). */
static size_t name_prefix(const char *name)
{
    const char *dot = strrchr(name, '.'), *slash = strrchr(name, '/');
    const char *cut = dot > slash ? dot : slash;
    return cut ? (size_t)(cut - name) : 0;
}

/* Residual Adds become units; chained Adds sharing a name prefix (a
 * transformer layer's attention and MLP) are one unit. */
static void add_block_group(const Graph *g, DepGraph *dg)
{
    int *adds = NULL, n_adds = 0;
    for (int i = 0; i < g->n_nodes; i++)
        if (residual_skip_input(g, i) >= 0) {
            adds = xrealloc(adds, sizeof *adds * (size_t)(n_adds + 1));
            adds[n_adds++] = i;
        }
    if (n_adds == 0)
        return;
    Group grp = {.id = dg->n_groups, .name = xstrdup("blocks"), .kind = GROUP_BLOCK, .unit_width = 1};
    grp.block_start = xcalloc((size_t)n_adds + 1, sizeof *grp.block_start);
    grp.block_adds = xmalloc(sizeof *grp.block_adds * (size_t)n_adds);
    int units = 0; /* unit units-1 holds block_adds[block_start[units-1] .. block_start[units]) */
    for (int k = 0; k < n_adds; k++) {
        const Node *prev = k ? &g->nodes[adds[k - 1]] : NULL, *cur = &g->nodes[adds[k]];
        int skip = residual_skip_input(g, adds[k]);
        size_t pl = prev ? name_prefix(prev->name) : 0, cl = name_prefix(cur->name);
        bool chained = units > 0 && prev && cur->in[skip] == prev->out[0] && pl == cl && pl > 0 &&
                       !strncmp(prev->name, cur->name, pl) &&
                       grp.block_start[units] - grp.block_start[units - 1] < 2;
        if (!chained) {
            units++;
            grp.block_start[units] = grp.block_start[units - 1];
        }
        grp.block_adds[grp.block_start[units]++] = adds[k];
    }
    grp.n_units = units;
    free(adds);
    if (grp.n_units < 1) {
        free(grp.name);
        free(grp.block_start);
        free(grp.block_adds);
        return;
    }
    dg->groups = xrealloc(dg->groups, sizeof *dg->groups * (size_t)(dg->n_groups + 1));
    dg->groups[dg->n_groups++] = grp;
}

static void builder_done(Builder *b)
{
    for (int s = 0; s < b->n_spaces; s++)
        free(b->spaces[s].atom);
    free(b->spaces);
    free(b->space_of);
    free(b->unit_parent);
    free(b->group_parent);
    free(b->kind);
    free(b->blocked);
    free(b->approx);
    free(b->producer);
    for (int i = 0; i < b->n_reasons; i++)
        free(b->reasons[i]);
    free(b->reasons);
}

int depgraph_build(const Graph *g, DepGraph **out)
{
    Builder b = {.g = g};
    b.space_of = xmalloc(sizeof(int) * (size_t)(g->n_values + 1) * SH_MAX_RANK);
    for (int i = 0; i < (g->n_values + 1) * SH_MAX_RANK; i++)
        b.space_of[i] = -1;
    seed_inputs(&b);
    run_rules(&b);
    block_outputs(&b);
    DepGraph *dg = xcalloc(1, sizeof *dg);
    build_groups(&b, dg);
    builder_done(&b);
    add_block_group(g, dg);
    *out = dg;
    return 0;
}

void depgraph_free(DepGraph *dg)
{
    if (!dg)
        return;
    for (int i = 0; i < dg->n_groups; i++) {
        Group *grp = &dg->groups[i];
        for (int m = 0; m < grp->n_members; m++) {
            free(grp->members[m].start);
            free(grp->members[m].idx);
        }
        free(grp->members);
        free(grp->name);
        free(grp->producers);
        free(grp->blocked_reason);
        free(grp->approx_reason);
        free(grp->block_start);
        free(grp->block_adds);
    }
    free(dg->groups);
    free(dg);
}

const char *group_kind_name(GroupKind k)
{
    switch (k) {
    case GROUP_CHANNELS: return "channels";
    case GROUP_NEURONS: return "neurons";
    case GROUP_HEADS: return "heads";
    case GROUP_WIDTH: return "width";
    case GROUP_BLOCK: return "blocks";
    }
    return "?";
}

const Group *depgraph_find(const DepGraph *dg, const char *name)
{
    char *end;
    long id = strtol(name, &end, 10);
    if (*name && !*end && id >= 0 && id < dg->n_groups)
        return &dg->groups[id];
    for (int i = 0; i < dg->n_groups; i++)
        if (strcmp(dg->groups[i].name, name) == 0)
            return &dg->groups[i];
    return NULL;
}

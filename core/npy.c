#include "npy.h"

#include "error.h"
#include "fileio.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* NPY data is little-endian and we copy it as it is. */
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "npy.c assumes a little-endian host");

#define NPY_MAGIC "\x93NUMPY"
#define NPY_MAGIC_LEN 6
#define NPY_ALIGN 64
/* numpy itself refuses headers over 10000 bytes by default; ours is a
 * little more generous but keeps a corrupt length from allocating GBs. */
#define NPY_MAX_HEADER ((size_t)1 << 20)
/* numpy pads the header so the first dim can grow in place to 21 digits. */
#define NPY_GROWTH_DIGITS 21

const char *npy_descr(DType t)
{
    switch (t) {
    case SH_F32: return "<f4";
    case SH_I64: return "<i8";
    case SH_U8: return "|u1";
    case SH_BOOL: return "|b1";
    default: return NULL;
    }
}

static DType npy_dtype_of(const char *descr)
{
    static const DType all[] = {SH_F32, SH_I64, SH_U8, SH_BOOL};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (strcmp(descr, npy_descr(all[i])) == 0)
            return all[i];
    return SH_UNDEF;
}

/* ---- header dict parsing ------------------------------------------------ */

typedef struct {
    const char *name; /* file name for messages */
    const char *s;
    size_t n, pos;
} HeaderParser;

static int hp_fail(HeaderParser *p, const char *what)
{
    return sh_fail(SH_E_FORMAT, "%s: malformed NPY header: %s at byte %zu of the header dict", p->name,
                   what, p->pos);
}

static void hp_skip_ws(HeaderParser *p)
{
    while (p->pos < p->n && (p->s[p->pos] == ' ' || p->s[p->pos] == '\t' || p->s[p->pos] == '\n' ||
                             p->s[p->pos] == '\r'))
        p->pos++;
}

static bool hp_peek(HeaderParser *p, char c)
{
    hp_skip_ws(p);
    return p->pos < p->n && p->s[p->pos] == c;
}

static bool hp_accept(HeaderParser *p, char c)
{
    if (!hp_peek(p, c))
        return false;
    p->pos++;
    return true;
}

/* A quoted Python string without escapes, into buf. */
static int hp_string(HeaderParser *p, char *buf, size_t cap)
{
    hp_skip_ws(p);
    if (p->pos >= p->n || (p->s[p->pos] != '\'' && p->s[p->pos] != '"'))
        return hp_fail(p, "expected a quoted string");
    char quote = p->s[p->pos++];
    size_t len = 0;
    while (p->pos < p->n && p->s[p->pos] != quote) {
        char c = p->s[p->pos];
        if (c == '\\' || c == '\n')
            return hp_fail(p, "unexpected character in a string");
        if (len + 1 >= cap)
            return hp_fail(p, "string too long");
        buf[len++] = c;
        p->pos++;
    }
    if (p->pos >= p->n)
        return hp_fail(p, "unterminated string");
    p->pos++;
    buf[len] = '\0';
    return 0;
}

static bool hp_word(HeaderParser *p, const char *w)
{
    size_t len = strlen(w);
    hp_skip_ws(p);
    if (p->n - p->pos < len || memcmp(p->s + p->pos, w, len) != 0)
        return false;
    p->pos += len;
    return true;
}

static int hp_bool(HeaderParser *p, bool *v)
{
    if (hp_word(p, "True"))
        *v = true;
    else if (hp_word(p, "False"))
        *v = false;
    else
        return hp_fail(p, "expected True or False");
    return 0;
}

/* A non-negative Python int (an old "3L" long included). */
static int hp_int(HeaderParser *p, int64_t *v)
{
    hp_skip_ws(p);
    size_t start = p->pos;
    int64_t x = 0;
    while (p->pos < p->n && p->s[p->pos] >= '0' && p->s[p->pos] <= '9') {
        if (!sh_mul_ok(x, 10, &x) || !sh_add_ok(x, p->s[p->pos] - '0', &x))
            return hp_fail(p, "dimension too large");
        p->pos++;
    }
    if (p->pos == start)
        return hp_fail(p, "expected a non-negative integer");
    if (p->pos < p->n && p->s[p->pos] == 'L')
        p->pos++;
    *v = x;
    return 0;
}

/* "()", "(3,)", "(3, 4)", "(3, 4,)". A one-element tuple needs its comma. */
static int hp_shape(HeaderParser *p, Shape *s)
{
    int rc;
    memset(s, 0, sizeof *s);
    if (!hp_accept(p, '('))
        return hp_fail(p, "expected a shape tuple");
    bool comma = false;
    while (!hp_accept(p, ')')) {
        if (s->rank > 0 && !comma)
            return hp_fail(p, "expected ',' or ')' in the shape");
        if (s->rank == SH_MAX_RANK)
            return sh_fail(SH_E_UNSUPPORTED, "%s: NPY arrays of more than %d dims are not supported", p->name,
                           SH_MAX_RANK);
        if ((rc = hp_int(p, &s->d[s->rank])) < 0)
            return rc;
        s->rank++;
        comma = hp_accept(p, ',');
    }
    if (s->rank == 1 && !comma)
        return hp_fail(p, "a one-element shape needs a trailing comma, as in (3,)");
    return 0;
}

enum { KEY_DESCR = 1, KEY_FORTRAN = 2, KEY_SHAPE = 4 };

static int hp_entry(HeaderParser *p, NpyHeader *h, int *seen)
{
    char key[32], descr[64];
    int rc = hp_string(p, key, sizeof key);
    if (rc < 0)
        return rc;
    if (!hp_accept(p, ':'))
        return hp_fail(p, "expected ':' after a key");
    int bit = strcmp(key, "descr") == 0           ? KEY_DESCR
              : strcmp(key, "fortran_order") == 0 ? KEY_FORTRAN
              : strcmp(key, "shape") == 0         ? KEY_SHAPE
                                                  : 0;
    if (!bit)
        return sh_fail(SH_E_FORMAT, "%s: malformed NPY header: unknown key '%s'", p->name, key);
    if (*seen & bit)
        return sh_fail(SH_E_FORMAT, "%s: malformed NPY header: key '%s' appears twice", p->name, key);
    *seen |= bit;
    if (bit == KEY_DESCR) {
        if (hp_peek(p, '[') || hp_peek(p, '{'))
            return sh_fail(SH_E_UNSUPPORTED, "%s: structured NPY dtypes are not supported", p->name);
        if ((rc = hp_string(p, descr, sizeof descr)) < 0)
            return rc;
        h->dtype = npy_dtype_of(descr);
        if (h->dtype == SH_UNDEF)
            return sh_fail(SH_E_UNSUPPORTED,
                           "%s: NPY dtype '%s' is not supported (use '<f4', '<i8', '|u1' or '|b1', "
                           "e.g. x.astype(np.float32))",
                           p->name, descr);
    } else if (bit == KEY_FORTRAN) {
        bool fortran = false;
        if ((rc = hp_bool(p, &fortran)) < 0)
            return rc;
        if (fortran)
            return sh_fail(SH_E_UNSUPPORTED,
                           "%s: Fortran-order NPY arrays are not supported (save np.ascontiguousarray(x))",
                           p->name);
    } else {
        if ((rc = hp_shape(p, &h->shape)) < 0)
            return rc;
    }
    return 0;
}

static int npy_parse_dict(NpyHeader *h, const char *name, const char *text, size_t n)
{
    HeaderParser p = {.name = name, .s = text, .n = n};
    int seen = 0, rc;
    if (!hp_accept(&p, '{'))
        return hp_fail(&p, "expected '{'");
    while (!hp_accept(&p, '}')) {
        if ((rc = hp_entry(&p, h, &seen)) < 0)
            return rc;
        if (!hp_accept(&p, ',') && !hp_peek(&p, '}'))
            return hp_fail(&p, "expected ',' or '}'");
    }
    hp_skip_ws(&p);
    if (p.pos != p.n)
        return hp_fail(&p, "unexpected text after the dict");
    const char *missing = !(seen & KEY_DESCR)     ? "descr"
                          : !(seen & KEY_FORTRAN) ? "fortran_order"
                          : !(seen & KEY_SHAPE)   ? "shape"
                                                  : NULL;
    if (missing)
        return sh_fail(SH_E_FORMAT, "%s: malformed NPY header: no '%s' key", name, missing);
    return 0;
}

/* ---- the binary prefix ------------------------------------------------- */

/* Checks magic and version in b (n bytes available, up to 12 needed) and
 * sets the version, *dict_len and h->data_offset's prefix part. */
static int npy_parse_prefix(NpyHeader *h, const char *name, const unsigned char *b, size_t n,
                            size_t *prefix, size_t *dict_len)
{
    if (n < NPY_MAGIC_LEN || memcmp(b, NPY_MAGIC, NPY_MAGIC_LEN) != 0)
        return sh_fail(SH_E_FORMAT, "%s: not an NPY file (no \\x93NUMPY magic)", name);
    if (n < 8)
        return sh_fail(SH_E_FORMAT, "%s: truncated NPY header", name);
    h->major = b[6];
    h->minor = b[7];
    if (h->major < 1 || h->major > 3 || h->minor != 0)
        return sh_fail(SH_E_UNSUPPORTED, "%s: NPY format version %d.%d is not supported (1.0, 2.0, 3.0)", name,
                       h->major, h->minor);
    *prefix = h->major == 1 ? 10 : 12;
    if (n < *prefix)
        return sh_fail(SH_E_FORMAT, "%s: truncated NPY header", name);
    if (h->major == 1)
        *dict_len = (size_t)b[8] | (size_t)b[9] << 8;
    else
        *dict_len = (size_t)b[8] | (size_t)b[9] << 8 | (size_t)b[10] << 16 | (size_t)b[11] << 24;
    if (*dict_len > NPY_MAX_HEADER)
        return sh_fail(SH_E_FORMAT, "%s: NPY header length %zu is implausible", name, *dict_len);
    return 0;
}

static int npy_data_bytes(const NpyHeader *h, const char *name, int64_t *bytes)
{
    int64_t numel = shape_numel(&h->shape);
    if (numel < 0 || !sh_mul_ok(numel, (int64_t)dtype_size(h->dtype), bytes) ||
        (uint64_t)*bytes > SIZE_MAX / 2) {
        char buf[160];
        return sh_fail(SH_E_FORMAT, "%s: NPY shape %s is too large", name, shape_str(&h->shape, buf, sizeof buf));
    }
    return 0;
}

static int npy_check_size(const char *name, int64_t want, int64_t have)
{
    if (have < want)
        return sh_fail(SH_E_FORMAT, "%s: truncated: expected %lld bytes of array data, got %lld", name,
                       (long long)want, (long long)have);
    if (have > want)
        return sh_fail(SH_E_FORMAT, "%s: %lld unexpected bytes after the %lld bytes of array data", name,
                       (long long)(have - want), (long long)want);
    return 0;
}

/* Bools must be stored as 0 or 1. */
static int npy_check_bools(const Tensor *t, const char *name)
{
    const uint8_t *b = t->data;
    for (int64_t i = 0; t->dtype == SH_BOOL && i < t->numel; i++)
        if (b[i] > 1)
            return sh_fail(SH_E_FORMAT, "%s: byte %u at element %lld is not a bool", name, b[i], (long long)i);
    return 0;
}

static Shape npy_limit_rows(const Shape *s, int64_t limit)
{
    Shape r = *s;
    if (limit > 0 && r.rank > 0 && r.d[0] > limit)
        r.d[0] = limit;
    return r;
}

/* ---- reading ----------------------------------------------------------- */

int npy_read_mem(Tensor *out, const char *name, const void *buf, size_t n)
{
    const unsigned char *b = buf;
    NpyHeader h = {0};
    size_t prefix = 0, dict_len = 0;
    int64_t bytes;
    memset(out, 0, sizeof *out);
    int rc = npy_parse_prefix(&h, name, b, n, &prefix, &dict_len);
    if (rc < 0)
        return rc;
    if (n - prefix < dict_len)
        return sh_fail(SH_E_FORMAT, "%s: truncated NPY header", name);
    if ((rc = npy_parse_dict(&h, name, (const char *)b + prefix, dict_len)) < 0 ||
        (rc = npy_data_bytes(&h, name, &bytes)) < 0 ||
        (rc = npy_check_size(name, bytes, (int64_t)(n - prefix - dict_len))) < 0)
        return rc;
    if ((rc = tensor_alloc(out, h.dtype, &h.shape)) < 0)
        return sh_fail_prefix(rc, "%s", name);
    if (bytes)
        memcpy(out->data, b + prefix + dict_len, (size_t)bytes);
    if ((rc = npy_check_bools(out, name)) < 0)
        tensor_done(out);
    return rc;
}

static int npy_open(FILE **f, const char *path, int64_t *file_size)
{
    struct stat st;
    *f = NULL;
    if (!path || !path[0])
        return sh_fail(SH_E_ARG, "no NPY file name given");
    *f = fopen(path, "rb");
    if (!*f)
        return sh_fail(SH_E_IO, "cannot open %s: %s", path, strerror(errno));
    if (fstat(fileno(*f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(*f);
        *f = NULL;
        return sh_fail(SH_E_IO, "%s is not a regular file", path);
    }
    *file_size = st.st_size;
    return 0;
}

/* Reads the header from f, leaving it at the first data byte. */
static int npy_read_header_from(NpyHeader *h, FILE *f, const char *path)
{
    unsigned char pre[12];
    size_t prefix = 0, dict_len = 0, got = fread(pre, 1, sizeof pre, f);
    memset(h, 0, sizeof *h);
    int rc = npy_parse_prefix(h, path, pre, got, &prefix, &dict_len);
    if (rc < 0)
        return rc;
    char *dict = malloc(dict_len ? dict_len : 1);
    if (!dict)
        return sh_fail(SH_E_NOMEM, "%s: out of memory reading the NPY header", path);
    if (fseek(f, (long)prefix, SEEK_SET) != 0 || fread(dict, 1, dict_len, f) != dict_len) {
        free(dict);
        return sh_fail(SH_E_FORMAT, "%s: truncated NPY header", path);
    }
    rc = npy_parse_dict(h, path, dict, dict_len);
    free(dict);
    h->data_offset = prefix + dict_len;
    return rc;
}

int npy_read_header(NpyHeader *h, const char *path)
{
    FILE *f;
    int64_t size;
    memset(h, 0, sizeof *h);
    int rc = npy_open(&f, path, &size);
    if (rc < 0)
        return rc;
    rc = npy_read_header_from(h, f, path);
    fclose(f);
    return rc;
}

int npy_read_rows(Tensor *out, const char *path, int64_t limit)
{
    FILE *f;
    NpyHeader h;
    int64_t size, bytes;
    memset(out, 0, sizeof *out);
    int rc = npy_open(&f, path, &size);
    if (rc < 0)
        return rc;
    if ((rc = npy_read_header_from(&h, f, path)) < 0 || (rc = npy_data_bytes(&h, path, &bytes)) < 0 ||
        (rc = npy_check_size(path, bytes, size - (int64_t)h.data_offset)) < 0)
        goto done;
    Shape keep = npy_limit_rows(&h.shape, limit);
    if ((rc = tensor_alloc(out, h.dtype, &keep)) < 0) {
        sh_fail_prefix(rc, "%s", path);
        goto done;
    }
    size_t want = tensor_bytes(out);
    if (fread(out->data, 1, want, f) != want) {
        rc = sh_fail(SH_E_IO, "cannot read %s", path);
        tensor_done(out);
        goto done;
    }
    if ((rc = npy_check_bools(out, path)) < 0)
        tensor_done(out);
done:
    fclose(f);
    return rc;
}

int npy_read(Tensor *out, const char *path) { return npy_read_rows(out, path, 0); }

/* ---- writing ----------------------------------------------------------- */

/* The header dict as numpy writes it: sorted keys, repr of the shape
 * tuple, then room for the first dim to grow to NPY_GROWTH_DIGITS. */
static void npy_dict_text(char *buf, size_t cap, const Tensor *t)
{
    size_t len = (size_t)snprintf(buf, cap, "{'descr': '%s', 'fortran_order': False, 'shape': (",
                                  npy_descr(t->dtype));
    for (int i = 0; i < t->shape.rank; i++)
        len += (size_t)snprintf(buf + len, cap - len, "%s%lld", i ? ", " : "", (long long)t->shape.d[i]);
    len += (size_t)snprintf(buf + len, cap - len, "%s), }", t->shape.rank == 1 ? "," : "");
    if (t->shape.rank > 0) {
        int digits = snprintf(NULL, 0, "%lld", (long long)t->shape.d[0]);
        for (int i = digits; i < NPY_GROWTH_DIGITS; i++)
            buf[len++] = ' ';
        buf[len] = '\0';
    }
}

int npy_write(const char *path, const Tensor *t, bool overwrite)
{
    if (!npy_descr(t->dtype))
        return sh_fail(SH_E_UNSUPPORTED, "cannot write %s: NPY output of %s tensors is not supported", path,
                       dtype_name(t->dtype));
    if (t->numel && !t->data)
        return sh_fail(SH_E_ARG, "cannot write %s: the tensor has no data", path);
    /* 10 prefix bytes + dict + padding + '\n' is a multiple of 64; numpy
     * pads a full 64 when the dict happens to end aligned. */
    char head[10 + 512];
    npy_dict_text(head + 10, 400, t);
    size_t dict = strlen(head + 10);
    size_t pad = NPY_ALIGN - (10 + dict + 1) % NPY_ALIGN;
    memset(head + 10 + dict, ' ', pad);
    head[10 + dict + pad] = '\n';
    size_t hlen = dict + pad + 1;
    memcpy(head, NPY_MAGIC, NPY_MAGIC_LEN);
    head[6] = 1;
    head[7] = 0;
    head[8] = (char)(hlen & 0xff);
    head[9] = (char)(hlen >> 8);

    AtomicFile af;
    int rc = atomic_open(&af, path, overwrite);
    if (rc < 0)
        return rc;
    size_t bytes = tensor_bytes(t);
    if (fwrite(head, 1, 10 + hlen, af.f) != 10 + hlen || (bytes && fwrite(t->data, 1, bytes, af.f) != bytes)) {
        rc = sh_fail(SH_E_IO, "cannot write %s: %s", path, strerror(errno));
        atomic_abort(&af);
        return rc;
    }
    return atomic_commit(&af);
}

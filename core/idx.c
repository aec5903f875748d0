#include "idx.h"

#include "error.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

enum { IDX_UBYTE = 0x08 };

/* The first buffer is small and doubles as data arrives, so a header that
 * claims terabytes fails as "truncated" instead of allocating them. */
#define IDX_FIRST_CHUNK ((size_t)1 << 24)

static const char *idx_type_name(int type)
{
    switch (type) {
    case 0x08: return "unsigned byte";
    case 0x09: return "signed byte";
    case 0x0B: return "int16";
    case 0x0C: return "int32";
    case 0x0D: return "float32";
    case 0x0E: return "float64";
    default: return NULL;
    }
}

/* What the data of a file of this rank is, for messages. */
static const char *idx_data_kind(int rank)
{
    return rank == 1 ? "label data" : rank >= 3 ? "image data" : "data";
}

static int idx_open(gzFile *f, const char *path)
{
    struct stat st;
    *f = NULL;
    if (!path || !path[0])
        return sh_fail(SH_E_ARG, "no IDX file name given");
    if (stat(path, &st) != 0)
        return sh_fail(SH_E_IO, "cannot open %s: %s", path, strerror(errno));
    if (S_ISDIR(st.st_mode))
        return sh_fail(SH_E_IO, "%s is a directory, not an IDX file", path);
    *f = gzopen(path, "rb");
    if (!*f)
        return sh_fail(SH_E_IO, "cannot open %s: %s", path, errno ? strerror(errno) : "out of memory");
    gzbuffer(*f, 1 << 17);
    return 0;
}

/* Reads up to n bytes; *got < n means the stream ended. Fails only on a
 * corrupt gzip stream (a cut-off stream is an ordinary short read). */
static int idx_read_bytes(gzFile f, const char *path, void *buf, size_t n, size_t *got)
{
    *got = 0;
    while (*got < n) {
        size_t want = n - *got;
        if (want > (1u << 30))
            want = 1u << 30;
        int r = gzread(f, (char *)buf + *got, (unsigned)want);
        if (r < 0) {
            int zerr;
            const char *msg = gzerror(f, &zerr);
            if (zerr == Z_BUF_ERROR) /* "unexpected end of file": a cut-off stream */
                return 0;
            return sh_fail(SH_E_FORMAT, "%s: corrupt gzip data (%s)", path, msg);
        }
        if (r == 0)
            break;
        *got += (size_t)r;
    }
    return 0;
}

static uint32_t be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Reads and checks the magic and dims, leaving f at the first data byte. */
static int idx_header(gzFile f, const char *path, Shape *shape)
{
    unsigned char magic[4], dims[4 * SH_MAX_RANK];
    size_t got;
    int rc = idx_read_bytes(f, path, magic, 4, &got);
    if (rc < 0)
        return rc;
    if (got < 4)
        return sh_fail(SH_E_FORMAT, "%s: not an IDX file (only %zu bytes long)", path, got);
    if (magic[0] != 0 || magic[1] != 0)
        return sh_fail(SH_E_FORMAT, "%s: not an IDX file (magic 0x%08x does not start with two zero bytes)",
                       path, (unsigned)be32(magic));
    const char *type = idx_type_name(magic[2]);
    if (!type)
        return sh_fail(SH_E_FORMAT, "%s: not an IDX file (unknown element type byte 0x%02x)", path, magic[2]);
    if (magic[2] != IDX_UBYTE)
        return sh_fail(SH_E_UNSUPPORTED, "%s: IDX element type %s is not supported (only unsigned byte)",
                       path, type);
    int rank = magic[3];
    if (rank < 1 || rank > SH_MAX_RANK)
        return sh_fail(SH_E_UNSUPPORTED, "%s: IDX rank %d is not supported (1 to %d)", path, rank, SH_MAX_RANK);
    rc = idx_read_bytes(f, path, dims, (size_t)rank * 4, &got);
    if (rc < 0)
        return rc;
    if (got < (size_t)rank * 4)
        return sh_fail(SH_E_FORMAT, "%s: truncated: the header declares %d dims but the file ends after %zu of them",
                       path, rank, got / 4);
    shape->rank = rank;
    for (int i = 0; i < rank; i++)
        shape->d[i] = be32(dims + 4 * i);
    if (shape_numel(shape) < 0) {
        char buf[128];
        return sh_fail(SH_E_FORMAT, "%s: dims %s overflow", path, shape_str(shape, buf, sizeof buf));
    }
    return 0;
}

int idx_read_shape(Shape *shape, const char *path)
{
    gzFile f;
    memset(shape, 0, sizeof *shape);
    int rc = idx_open(&f, path);
    if (rc < 0)
        return rc;
    rc = idx_header(f, path, shape);
    gzclose(f);
    return rc;
}

/* Reads exactly want bytes into a buffer that grows as data arrives. */
static int idx_read_data(gzFile f, const char *path, int rank, size_t want, unsigned char **out)
{
    size_t cap = want < IDX_FIRST_CHUNK ? want : IDX_FIRST_CHUNK, have = 0;
    unsigned char *buf = malloc(cap ? cap : 1);
    if (!buf)
        return sh_fail(SH_E_NOMEM, "%s: out of memory reading %zu bytes", path, cap);
    for (;;) {
        size_t got;
        int rc = idx_read_bytes(f, path, buf + have, cap - have, &got);
        if (rc < 0) {
            free(buf);
            return rc;
        }
        have += got;
        if (have == want)
            break;
        if (have < cap) {
            free(buf);
            return sh_fail(SH_E_FORMAT, "%s: truncated: expected %zu bytes of %s, got %zu", path, want,
                           idx_data_kind(rank), have);
        }
        cap = cap > want / 2 ? want : cap * 2;
        unsigned char *bigger = realloc(buf, cap);
        if (!bigger) {
            free(buf);
            return sh_fail(SH_E_NOMEM, "%s: out of memory reading %zu bytes", path, cap);
        }
        buf = bigger;
    }
    *out = buf;
    return 0;
}

int idx_read(Tensor *out, const char *path, int64_t limit)
{
    gzFile f;
    Shape shape;
    memset(out, 0, sizeof *out);
    int rc = idx_open(&f, path);
    if (rc < 0)
        return rc;
    rc = idx_header(f, path, &shape);
    if (rc < 0)
        goto done;
    bool whole = limit <= 0 || limit >= shape.d[0];
    if (!whole)
        shape.d[0] = limit;
    int64_t numel = shape_numel(&shape);
    if ((uint64_t)numel > SIZE_MAX / 2) {
        rc = sh_fail(SH_E_NOMEM, "%s: %lld bytes of data are too many", path, (long long)numel);
        goto done;
    }
    unsigned char *data = NULL;
    rc = idx_read_data(f, path, shape.rank, (size_t)numel, &data);
    if (rc < 0)
        goto done;
    if (limit <= 0) {
        unsigned char extra;
        size_t got;
        rc = idx_read_bytes(f, path, &extra, 1, &got);
        if (rc == 0 && got > 0)
            rc = sh_fail(SH_E_FORMAT, "%s: unexpected bytes after the %lld bytes of %s the header declares",
                         path, (long long)numel, idx_data_kind(shape.rank));
        if (rc < 0) {
            free(data);
            goto done;
        }
    }
    *out = (Tensor){.dtype = SH_U8, .shape = shape, .numel = numel, .data = data, .owns = true};
done:
    gzclose(f);
    return rc;
}

#define _GNU_SOURCE
#include "fileio.h"

#include "error.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

bool file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

int atomic_open(AtomicFile *af, const char *path, bool overwrite)
{
    memset(af, 0, sizeof *af);
    if (!path || !path[0])
        return sh_fail(SH_E_ARG, "no file name given");
    struct stat st;
    if (stat(path, &st) == 0) {
        if (S_ISDIR(st.st_mode))
            return sh_fail(SH_E_IO, "%s is a directory", path);
        if (!overwrite)
            return sh_fail(SH_E_IO, "%s already exists (add force=on to overwrite it)", path);
    }
    af->path = xstrdup(path);
    af->tmp = xasprintf("%s.tmp-XXXXXX", path);
    int fd = mkstemp(af->tmp);
    if (fd < 0) {
        int e = errno;
        free(af->path);
        free(af->tmp);
        memset(af, 0, sizeof *af);
        return sh_fail(SH_E_IO, "cannot write %s: %s", path, strerror(e));
    }
    fchmod(fd, 0644);
    af->f = fdopen(fd, "wb");
    if (!af->f) {
        close(fd);
        atomic_abort(af);
        return sh_fail(SH_E_IO, "cannot write %s: %s", path, strerror(errno));
    }
    return 0;
}

void atomic_abort(AtomicFile *af)
{
    if (!af)
        return;
    if (af->f)
        fclose(af->f);
    if (af->tmp)
        unlink(af->tmp);
    free(af->tmp);
    free(af->path);
    memset(af, 0, sizeof *af);
}

int atomic_commit(AtomicFile *af)
{
    int rc = 0;
    if (!af->f)
        return sh_fail(SH_E_STATE, "file is not open");
    if (fflush(af->f) != 0 || ferror(af->f) || fsync(fileno(af->f)) != 0)
        rc = sh_fail(SH_E_IO, "cannot write %s: %s", af->path, strerror(errno));
    if (fclose(af->f) != 0 && rc == 0)
        rc = sh_fail(SH_E_IO, "cannot write %s: %s", af->path, strerror(errno));
    af->f = NULL;
    if (rc == 0 && rename(af->tmp, af->path) != 0)
        rc = sh_fail(SH_E_IO, "cannot rename into %s: %s", af->path, strerror(errno));
    if (rc == 0) {
        free(af->tmp);
        af->tmp = NULL;
    }
    atomic_abort(af);
    return rc;
}

int write_file_atomic(const char *path, const void *data, size_t n, bool overwrite)
{
    AtomicFile af;
    int rc = atomic_open(&af, path, overwrite);
    if (rc < 0)
        return rc;
    if (n && fwrite(data, 1, n, af.f) != n) {
        rc = sh_fail(SH_E_IO, "cannot write %s: %s", path, strerror(errno));
        atomic_abort(&af);
        return rc;
    }
    return atomic_commit(&af);
}

int read_file(const char *path, unsigned char **data, size_t *n, size_t max_bytes)
{
    *data = NULL;
    *n = 0;
    FILE *f = fopen(path, "rb");
    if (!f)
        return sh_fail(SH_E_IO, "cannot open %s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || S_ISDIR(st.st_mode)) {
        fclose(f);
        return sh_fail(SH_E_IO, "%s is not a regular file", path);
    }
    if ((size_t)st.st_size > max_bytes) {
        fclose(f);
        return sh_fail(SH_E_UNSUPPORTED, "%s is too large (%lld bytes)", path,
                       (long long)st.st_size);
    }
    size_t size = (size_t)st.st_size;
    unsigned char *buf = malloc(size + 1);
    if (!buf) {
        fclose(f);
        return sh_fail(SH_E_NOMEM, "out of memory reading %s", path);
    }
    size_t got = fread(buf, 1, size, f);
    int err = ferror(f);
    fclose(f);
    if (err || got != size) {
        free(buf);
        return sh_fail(SH_E_IO, "cannot read %s", path);
    }
    buf[size] = 0;
    *data = buf;
    *n = size;
    return 0;
}

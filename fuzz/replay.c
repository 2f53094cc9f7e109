/*
 * replay.c - a main() for the fuzz targets without libFuzzer: feed every file of the
 * directories given (sorted by name, not recursive) to LLVMFuzzerTestOneInput, one call per
 * file, and say how many. Built with the project's compiler and sanitizers, it is the unit
 * test that replays the seed and regression corpora (fuzz/corpus, fuzz/regress) in CI, where
 * there is no clang. A crash, a sanitizer report or a broken property aborts the process.
 * Size letters: none.
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fileio.h"
#include "fuzz.h"
#include "sac.h"

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int main(int argc, char **argv)
{
    int total = 0;
    for (int i = 1; i < argc; i++) {
        DIR *d = opendir(argv[i]);
        if (!d) {
            fprintf(stderr, "replay: %s: cannot open directory\n", argv[i]);
            return 1;
        }
        char **names = NULL;
        size_t n = 0;
        for (struct dirent *e; (e = readdir(d));) {
            if (e->d_name[0] == '.') continue;
            names = realloc(names, (n + 1) * sizeof(*names));
            if (!names || !(names[n++] = strdup(e->d_name))) return 1;
        }
        closedir(d);
        if (n) qsort(names, n, sizeof(*names), cmp_names);
        for (size_t k = 0; k < n; k++) {
            char path[4096];
            snprintf(path, sizeof(path), "%s/%s", argv[i], names[k]);
            uint8_t *buf;
            size_t len;
            if (sac_read_file(path, 0, &buf, &len)) return 1;
            fprintf(stderr, "replay: %s (%zu bytes)\n", path, len);
            LLVMFuzzerTestOneInput(buf, len);
            free(buf);
            free(names[k]);
            total++;
        }
        free(names);
        fprintf(stderr, "replay: %s: %zu inputs\n", argv[i], n);
    }
    printf("replayed %d inputs\n", total);
    return 0;
}

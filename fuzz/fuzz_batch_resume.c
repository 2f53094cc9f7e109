/*
 * fuzz_batch_resume.c - `saccade batch --resume` reading an existing results file
 * (tools/batch_output.c through its interface batch.h): the first input byte picks the
 * format (jsonl, tsv, coco, html), the rest is the file found on disk (PATH.partial for coco).
 * batch_output_open parses it, batch_output_start cuts a torn last line and opens it for
 * appending; the output is then closed as an interrupted run would close it.
 * Size letters: none.
 */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "batch.h"
#include "fuzz.h"
#include "sac.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_quiet();
    if (size < 1) return 0;
    BatchFormat fmt = (BatchFormat)(data[0] & 3);
    static char out[512];
    snprintf(out, sizeof(out), "%s", fuzz_dir_path("results"));
    const char *file = fmt == BATCH_COCO ? fuzz_dir_path("results.partial") : out;
    FILE *f = fopen(file, "wb");
    if (!f) fuzz_fail("cannot write the results file");
    if (size > 1 && fwrite(data + 1, 1, size - 1, f) != size - 1) fuzz_fail("short write");
    fclose(f);
    BatchOutput *o = batch_output_open(out, fmt, 1);
    if (o) {
        size_t errors = 0, n = batch_output_resumed(o, &errors);
        if (errors > n) fuzz_fail("more error records than records");
        batch_output_start(o); /* cuts a torn line, opens for appending */
        batch_output_close(o, 0);
    }
    unlink(out);
    unlink(fuzz_dir_path("results.partial"));
    return 0;
}

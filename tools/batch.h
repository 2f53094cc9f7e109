/*
 * batch.h - the pieces of `saccade batch` (cmd_batch.c): finding the images under directories
 * (batch_walk.c) and the result files, their formats and resuming them (batch_output.c).
 *
 * Size letters: none; no tensors pass through this interface.
 */
#ifndef SACCADE_BATCH_H
#define SACCADE_BATCH_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "image.h"

/* ---- finding images (batch_walk.c) ---- */

typedef struct BatchFile {
    char *path;      /* as reported: the DIR argument joined with the path below it (owned) */
    const char *rel; /* points into path: the part below the DIR argument (the shard key) */
    dev_t dev;       /* the file (links followed), to tell an output that is one of the inputs */
    ino_t ino;
} BatchFile;

typedef struct BatchFileList {
    BatchFile *files; /* (n) sorted by path (bytewise), no duplicates */
    size_t n, cap;
    size_t skipped;   /* directories and files that could not be read (warned about) */
} BatchFileList;

/* Walk each root recursively and collect the image files (see batch_is_image_name and
 * batch_sniff), following symbolic links but entering each directory (device, inode) once, so
 * a link loop or a link back into the tree is walked only once. Entries whose name starts with
 * '.' are skipped below a root; a root that is a file is taken as given. Unreadable directories,
 * dangling links and unreadable files not named like images are warned about, skipped and
 * counted in out->skipped (the batch then exits 1). The list is sorted and deduplicated.
 * Returns SAC_OK, or SAC_ERR_NOTFOUND / SAC_ERR_IO (logged, naming the root) when a root cannot
 * be opened, SAC_ERR_NOMEM. Free the list with batch_files_free. */
int batch_walk(const char *const *roots, int n_roots, BatchFileList *out);
void batch_files_free(BatchFileList *list);

/* 1 when the file name ends in an extension stb_image reads (case-insensitive): jpg jpeg jpe jfif
 * png gif bmp dib tga icb vda vst psd hdr rgbe pic pnm ppm pgm pbm. */
int batch_is_image_name(const char *name);
/* 1 when the first n bytes of a file start like an image: JPEG FF D8 FF, PNG, GIF8, BM, 8BPS,
 * #?RADIANCE / #?RGBE, P5 / P6 followed by whitespace, the Softimage PIC magic. */
int batch_sniff(const uint8_t *head, size_t n);

/* Which of `count` shards a file belongs to: FNV-1a 64 of its path below the DIR argument, mod
 * count. Stable across machines, runs and mount points. */
int batch_shard_of(const char *rel, int count);

/* ---- results (batch_output.c) ---- */

typedef enum { BATCH_JSONL = 0, BATCH_TSV, BATCH_COCO, BATCH_HTML } BatchFormat;

/* "jsonl", "tsv", "coco", "html" -> format; -1 when unknown. */
int batch_format_parse(const char *name);
/* The format an output file name suggests (.jsonl .ndjson .tsv .json .html .htm), else -1. */
int batch_format_from_path(const char *path);

typedef struct BatchRecord {
    const char *image;         /* the file's path */
    const char *caption;       /* NULL when the image failed */
    double logprob;            /* of the caption */
    const char *error;         /* NULL on success */
    /* HTML only (may be NULL): */
    const char *thumb_b64;     /* PNG thumbnail, base64 */
    const char *attention_b64; /* PNG attention figure, base64 */
    long order;                /* position in the sorted list: the gallery's display order */
} BatchRecord;

typedef struct BatchOutput BatchOutput;

/* Prepare the results; nothing is written until batch_output_start. path NULL means stdout.
 * With resume, an existing file (for coco: PATH.partial) is read: its records' images count as
 * done; a complete line that is not a record of this format is an error. A path that is not a
 * regular file (a device, a FIFO) is written directly and cannot be resumed; coco then keeps
 * the records in memory, as for stdout. NULL (logged) on failure. */
BatchOutput *batch_output_open(const char *path, BatchFormat fmt, int resume);
/* Start writing (through common/output.c): without resume an existing file is truncated and
 * rewritten in place (records are flushed one by one, so a killed run leaves them for
 * --resume); with resume a torn last line (no newline) is cut off, an HTML footer removed and
 * new records appended. SAC_OK or SAC_ERR_IO (logged). */
int batch_output_start(BatchOutput *o);
/* 1 when image already has a record (read by --resume). */
int batch_output_has(const BatchOutput *o, const char *image);
/* Records read by --resume: all of them, and how many were errors. */
size_t batch_output_resumed(const BatchOutput *o, size_t *errors);
/* Format and append one record, flushed before returning. Thread-safe. SAC_OK or SAC_ERR_IO. */
int batch_output_write(BatchOutput *o, const BatchRecord *r);
/* Finish and free: complete = 1 writes the COCO JSON (a regular file atomically, then
 * PATH.partial is removed) and the HTML footer; 0 (interrupted) leaves the files ready for
 * --resume. Every write is checked: SAC_ERR_IO (logged, naming the file) when one failed. */
int batch_output_close(BatchOutput *o, int complete);

#endif

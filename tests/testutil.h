/*
 * testutil.h - numerical checks shared by the test suites.
 *
 * gradcheck: central finite differences of a scalar loss, accumulated in double,
 * at random indices, compared with the analytic gradient by symmetric relative error.
 * check_tensor: |got - ref| <= atol + rtol * |ref| elementwise, printing the worst index.
 * make_shapes_dataset: the tiny drawn-shapes captioning set the trainer tests learn.
 * scratch_dir_make, scratch_path, slurp, same_file, keep_errors: the files and messages of a
 * test that runs the program's file-writing parts (test_trainer, test_finetune).
 */
#ifndef SACCADE_TESTUTIL_H
#define SACCADE_TESTUTIL_H

#include <stddef.h>

#include "rng.h"

/* Recompute the loss from the current parameter values; return it in double.
 * For a layer check the loss is L = sum(out * dout) with a fixed random dout. */
typedef double (*GradLossFn)(void *ctx);

/* Check grad[i] = dL/dx[i] for n_samples random i (all i when n <= n_samples).
 * x is perturbed in place by +-eps and restored. Passes when every sampled index has
 * |a - n| <= tol * max(|a|, |n|) or |a - n| <= abs_floor. Prints the worst index;
 * returns the number of failing indices (0 = pass). */
int gradcheck(const char *name, float *x, const float *grad, size_t n, GradLossFn loss, void *ctx,
              int n_samples, double eps, double tol, double abs_floor, SacRng *rng);

/* Returns the number of elements outside atol + rtol * |ref|; prints the worst. */
int check_tensor(const char *name, const float *got, const float *ref, size_t n, double atol,
                 double rtol);

/* Fill with uniform values in [lo, hi). */
void fill_uniform(float *x, size_t n, float lo, float hi, SacRng *rng);
/* Fill with values whose magnitude is at least `gap` (keeps ReLU inputs off the kink). */
void fill_away_from_zero(float *x, size_t n, float gap, float hi, SacRng *rng);
/* sum(a * b) in double. */
double dot_double(const float *a, const float *b, size_t n);

/* Eight 20x20 PNGs in dir, img0..img7.png: a red, green, blue or yellow square (0-3) or stripe
 * (4-7), and dir/captions.tsv with two captions each ("a red square", "the red square on
 * gray"). The background is gray, or with dim_background a dim version of the shape's colour
 * (so every position of a coarse grid sees the colour). Returns 0, or -1 when a file could not
 * be written. */
int make_shapes_dataset(const char *dir, int dim_background);

/* A new empty directory /tmp/PREFIX_XXXXXX for the test's files: its path (static storage,
 * until the next call), or NULL when it could not be made. */
const char *scratch_dir_make(const char *prefix);
/* "DIR/name" in the directory scratch_dir_make made last, in one of 4 rotating static buffers
 * (so up to 4 paths can be held at once; copy one to keep it longer). */
const char *scratch_path(const char *name);
/* The whole file, NUL-terminated (searchable as a string; *n bytes before the NUL), for the
 * caller to free; NULL when it cannot be read. */
char *slurp(const char *path, size_t *n);
/* 1 when both files can be read and hold the same bytes. */
int same_file(const char *a, const char *b);

/* A log sink (sac_log_set_sink) that keeps the last error message in last_error. */
extern char last_error[1024];
void keep_errors(int level, const char *msg, void *user);

#endif

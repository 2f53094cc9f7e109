/*
 * testutil.c - gradient and tensor checks, the shapes data set, scratch files; see testutil.h.
 */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <stb_image_write.h>

#include "sac.h"

int gradcheck(const char *name, float *x, const float *grad, size_t n, GradLossFn loss, void *ctx,
              int n_samples, double eps, double tol, double abs_floor, SacRng *rng)
{
    int all = n <= (size_t)n_samples;
    int count = all ? (int)n : n_samples;
    int bad = 0;
    double worst = -1.0;
    size_t worst_i = 0;
    double worst_a = 0.0, worst_num = 0.0;
    for (int s = 0; s < count; s++) {
        size_t i = all ? (size_t)s : (size_t)sac_rng_below(rng, (uint32_t)n);
        float orig = x[i];
        x[i] = (float)(orig + eps);
        double lp = loss(ctx);
        x[i] = (float)(orig - eps);
        double lm = loss(ctx);
        x[i] = orig;
        /* the perturbation actually applied, after rounding to float */
        double h = (double)(float)(orig + eps) - (double)(float)(orig - eps);
        double num = (lp - lm) / h;
        double a = grad[i];
        double diff = fabs(a - num);
        double scale = fmax(fabs(a), fabs(num));
        double rel = scale > 0 ? diff / scale : 0.0;
        int ok = diff <= abs_floor || rel <= tol;
        if (!ok) bad++;
        /* how close this index came to failing: > 1 fails */
        double score = fmin(tol > 0 ? rel / tol : rel, abs_floor > 0 ? diff / abs_floor : diff);
        if (s == 0 || score > worst) {
            worst = score;
            worst_i = i;
            worst_a = a;
            worst_num = num;
        }
    }
    double wrel = fabs(worst_a - worst_num) / fmax(fmax(fabs(worst_a), fabs(worst_num)), 1e-300);
    printf("gradcheck %-30s %s: %d/%d indices; closest to failing [%zu]: analytic %.6g, numeric %.6g, "
           "rel err %.2g (tol %.0e, abs floor %.0e)\n",
           name, bad ? "FAIL" : "ok", count - bad, count, worst_i, worst_a, worst_num, wrel, tol, abs_floor);
    fflush(stdout); /* Check's forked child may not flush before it reports */
    return bad;
}

int check_tensor(const char *name, const float *got, const float *ref, size_t n, double atol, double rtol)
{
    int bad = 0;
    double worst = -1.0;
    size_t wi = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - ref[i]);
        double lim = atol + rtol * fabs(ref[i]);
        if (!(d <= lim)) bad++;
        double r = d / lim;
        if (!(r <= worst)) {
            worst = r;
            wi = i;
        }
    }
    if (n == 0) {
        printf("check %-32s ok (empty)\n", name);
        return 0;
    }
    printf("check %-32s %s: %zu elements, %d outside atol %.1e + rtol %.1e; worst [%zu] got %.8g ref %.8g\n",
           name, bad ? "FAIL" : "ok", n, bad, atol, rtol, wi, got[wi], ref[wi]);
    fflush(stdout);
    return bad;
}

void fill_uniform(float *x, size_t n, float lo, float hi, SacRng *rng)
{
    for (size_t i = 0; i < n; i++) x[i] = lo + (hi - lo) * sac_rng_uniform(rng);
}

void fill_away_from_zero(float *x, size_t n, float gap, float hi, SacRng *rng)
{
    for (size_t i = 0; i < n; i++) {
        float m = gap + (hi - gap) * sac_rng_uniform(rng);
        x[i] = (sac_rng_u32(rng) & 1) ? m : -m;
    }
}

double dot_double(const float *a, const float *b, size_t n)
{
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += (double)a[i] * b[i];
    return s;
}

int make_shapes_dataset(const char *dir, int dim_background)
{
    static const char *colour[4] = {"red", "green", "blue", "yellow"};
    static const unsigned char rgb[4][3] = {{220, 20, 20}, {20, 200, 20}, {20, 20, 220}, {230, 230, 20}};
    char file[512];
    snprintf(file, sizeof(file), "%s/captions.tsv", dir);
    FILE *tsv = fopen(file, "w");
    if (!tsv) return -1;
    int ok = 1;
    for (int i = 0; i < 8 && ok; i++) {
        unsigned char px[20 * 20 * 3];
        for (int y = 0; y < 20; y++)
            for (int x = 0; x < 20; x++) {
                const int in = i < 4 ? (x > 5 && x < 14 && y > 5 && y < 14) : (y > 8 && y < 12);
                for (int c = 0; c < 3; c++)
                    px[(y * 20 + x) * 3 + c] = in ? rgb[i % 4][c] : dim_background ? 64 + rgb[i % 4][c] / 4 : 128;
            }
        snprintf(file, sizeof(file), "%s/img%d.png", dir, i);
        ok = stbi_write_png(file, 20, 20, 3, px, 60) != 0;
        const char *shape = i < 4 ? "square" : "stripe";
        fprintf(tsv, "img%d.png\ta %s %s\nimg%d.png\tthe %s %s on gray\n", i, colour[i % 4], shape, i, colour[i % 4],
                shape);
    }
    return fclose(tsv) == 0 && ok ? 0 : -1;
}

static char scratch_dir[64];

const char *scratch_dir_make(const char *prefix)
{
    snprintf(scratch_dir, sizeof(scratch_dir), "/tmp/%s_XXXXXX", prefix);
    return mkdtemp(scratch_dir);
}

const char *scratch_path(const char *name)
{
    static char buf[4][256];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof(buf[k]), "%s/%s", scratch_dir, name);
    return buf[k];
}

char *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc(*n + 1);
    if (b && fread(b, 1, *n, f) == *n) {
        b[*n] = 0;
    } else {
        free(b);
        b = NULL;
    }
    fclose(f);
    return b;
}

int same_file(const char *a, const char *b)
{
    size_t na, nb;
    char *x = slurp(a, &na), *y = slurp(b, &nb);
    const int same = x && y && na == nb && !memcmp(x, y, na);
    free(x), free(y);
    return same;
}

char last_error[1024];

void keep_errors(int level, const char *msg, void *user)
{
    (void)user;
    if (level == SAC_LOG_ERROR) snprintf(last_error, sizeof(last_error), "%s", msg);
}

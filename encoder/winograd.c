/*
 * winograd.c - 3x3 stride-1 convolution by F(2x2, 3x3), see winograd.h.
 *
 * The transforms (Lavin & Gray 2016, section 4.1):
 *   B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1]      V = B^T d B   (4x4 input patch d)
 *   G   = [1 0 0; 1/2 1/2 1/2; 1/2 -1/2 1/2; 0 0 1]     U = G g G^T   (3x3 filter g)
 *   A^T = [1 1 1 0; 0 1 -1 -1]                         Y = A^T M A   (2x2 output tile)
 * Tile (ty, tx) covers output rows 2ty, 2ty+1 and columns 2tx, 2tx+1; its patch starts at input
 * row 2ty - 1, column 2tx - 1 (padding 1: zero outside the image). Odd sides get a last tile
 * whose second row / column is not written.
 *
 * A chunk is a run of tile rows (a tile row = the tw tiles of one band of one image), sized so
 * that its V and M stay near the cache. For each channel the input transform takes up to 64
 * tiles of a row at once: the four patch rows (zero-padded), B^T down the columns split into
 * even and odd entries, then B across, written straight into V as sac_pack panels of 16 tiles
 * (the tiles are the outputs of the products, the channels their k). The 16 products
 * M[xi] = U[xi] @ V[xi] run on register-blocked kernels per path (wino_gemm_*); the output
 * transform runs 8 tiles at a time with the bias, ReLU or accumulation fused.
 */
#include "winograd.h"

#include <string.h>

#include "cpu.h"
#include "matmul.h"
#include "sac.h"
#include "threadpool.h"

#if SAC_KERNEL_X86
#include <immintrin.h>
#endif

/* V + M of one chunk, in floats (1 MB). */
enum { WINO_CHUNK_FLOATS = 1 << 18 };

size_t winograd_weight_floats(int C, int OC) { return (size_t)16 * OC * C; }

/* u[xi * plane] = (G g G^T)[xi] for one 3x3 filter g (flipped: g rotated by 180 degrees) */
static void wino_filter(float *u, size_t plane, const float *g0, int flip)
{
    float g[9];
    for (int k = 0; k < 9; k++) g[k] = flip ? g0[8 - k] : g0[k];
    float t[4][3]; /* G g */
    for (int k = 0; k < 3; k++) {
        t[0][k] = g[k];
        t[1][k] = 0.5f * (g[k] + g[3 + k] + g[6 + k]);
        t[2][k] = 0.5f * (g[k] - g[3 + k] + g[6 + k]);
        t[3][k] = g[6 + k];
    }
    for (int i = 0; i < 4; i++) { /* (G g) G^T */
        float *ui = u + (size_t)i * 4 * plane;
        ui[0] = t[i][0];
        ui[plane] = 0.5f * (t[i][0] + t[i][1] + t[i][2]);
        ui[2 * plane] = 0.5f * (t[i][0] - t[i][1] + t[i][2]);
        ui[3 * plane] = t[i][2];
    }
}

/* Filters are transformed a block of WINO_WBLOCK at a time into a local buffer, then copied
 * plane by plane: written straight, the 16 planes (OC * C floats apart, often a multiple of
 * 4 KB) map to the same cache sets and each store missed. */
enum { WINO_WBLOCK = 64 };

/* U[xi][row][col] for row in [0, rows) and col in [0, cols): the filter of (row, col) is
 * weight + (row * rs + col * cs) * 9, flipped when flip. */
static void wino_weights_blocked(float *U, const float *weight, int rows, int cols, size_t rs, size_t cs, int flip)
{
    const size_t plane = (size_t)rows * cols;
    float buf[16 * WINO_WBLOCK];
    for (int r = 0; r < rows; r++)
        for (int c0 = 0; c0 < cols; c0 += WINO_WBLOCK) {
            const int n = SAC_MIN(WINO_WBLOCK, cols - c0);
            for (int c = 0; c < n; c++) wino_filter(buf + c, WINO_WBLOCK, weight + (r * rs + (c0 + c) * cs) * 9, flip);
            for (int xi = 0; xi < 16; xi++)
                memcpy(U + xi * plane + (size_t)r * cols + c0, buf + xi * WINO_WBLOCK, sizeof(float) * n);
        }
}

void winograd_weights(float *U, const float *weight, int C, int OC)
{
    wino_weights_blocked(U, weight, OC, C, (size_t)C, 1, 0);
}

void winograd_weights_transposed(float *U, const float *weight, int C, int OC)
{
    wino_weights_blocked(U, weight, C, OC, 1, (size_t)C, 1);
}

typedef struct {
    int th, tw; /* tile rows / columns of an image */
    int rows;   /* tile rows per chunk */
    int ld;     /* tiles of the widest chunk, rounded up to whole panels */
} WinoPlan;

static WinoPlan wino_plan(int C, int OC, int H, int W)
{
    WinoPlan pl;
    pl.th = (H + 1) / 2;
    pl.tw = (W + 1) / 2;
    const size_t per_tile = (size_t)16 * (C + OC);
    pl.rows = (int)SAC_MAX(1, WINO_CHUNK_FLOATS / (per_tile * pl.tw));
    pl.ld = (pl.rows * pl.tw + SAC_PANEL - 1) / SAC_PANEL * SAC_PANEL;
    return pl;
}

size_t winograd_scratch_floats(int C, int OC, int H, int W)
{
    const WinoPlan pl = wino_plan(C, OC, H, W);
    return (size_t)16 * (C + OC) * pl.ld; /* V and M */
}

/* Element (tile t, channel c) of a transformed-input matrix stored as sac_pack panels: the
 * tiles are the GEMM's outputs, the channels its k. */
static inline size_t panel_at(int t, int c, int C)
{
    return ((size_t)(t / SAC_PANEL) * C + c) * SAC_PANEL + t % SAC_PANEL;
}

/* Tiles of a tile row taken at a time by the input transform (its buffers are on the stack). */
enum { WINO_SEG = 64 };

/* The patch rows above and below the image. */
static const float wino_zeros[2 * WINO_SEG + 2];

/* V[xi] (packed panels of tiles, the xi-th of 16 planes `plane` apart) for channels [c0, c1)
 * of the tw tiles of tile row ty of one image img (C, H, W), as tiles t0 .. t0 + tw - 1. */
static inline SAC_ALWAYS_INLINE void input_tile_row_body(float *V, size_t plane, int t0, const float *img, int C,
                                                         int c0, int c1, int H, int W, int ty, int tw)
{
    for (int c = c0; c < c1; c++) {
        for (int s0 = 0; s0 < tw; s0 += WINO_SEG) {
            const int n = SAC_MIN(WINO_SEG, tw - s0), x0 = 2 * s0 - 1, np = 2 * n + 2;
            /* the patch rows of these tiles, p[j] = row[x0 + j] (zero outside the image), then
             * B^T d down the columns, split into even and odd entries: tile t reads
             * p[2t .. 2t + 3] = e[t], o[t], e[t + 1], o[t + 1] */
            float p[4][2 * WINO_SEG + 2], e[4][WINO_SEG + 1], o[4][WINO_SEG + 1];
            const float *pr[4]; /* row i: the image row itself when the patch lies inside it */
            for (int i = 0; i < 4; i++) {
                const int y = 2 * ty - 1 + i;
                if (y < 0 || y >= H) {
                    pr[i] = wino_zeros;
                    continue;
                }
                const float *src = img + ((size_t)c * H + y) * W;
                if (x0 >= 0 && x0 + np <= W) {
                    pr[i] = src + x0;
                    continue;
                }
                /* an edge of the image: a copy with its padding (at most one value on the left,
                 * two on the right; set one by one, as a memset of a few values compiles to a
                 * slow `rep stos`) */
                const int lo = SAC_MAX(0, x0), hi = SAC_MIN(W, x0 + np);
                if (lo > x0) p[i][0] = 0.0f;
                if (hi > lo) memcpy(p[i] + (lo - x0), src + lo, sizeof(float) * (hi - lo));
                for (int j = SAC_MAX(hi - x0, lo - x0); j < np; j++) p[i][j] = 0.0f;
                pr[i] = p[i];
            }
            for (int k = 0; k <= n; k++) {
                const float a0 = pr[0][2 * k], a1 = pr[1][2 * k], a2 = pr[2][2 * k], a3 = pr[3][2 * k];
                const float b0 = pr[0][2 * k + 1], b1 = pr[1][2 * k + 1], b2 = pr[2][2 * k + 1], b3 = pr[3][2 * k + 1];
                e[0][k] = a0 - a2, e[1][k] = a1 + a2, e[2][k] = a2 - a1, e[3][k] = a1 - a3;
                o[0][k] = b0 - b2, o[1][k] = b1 + b2, o[2][k] = b2 - b1, o[3][k] = b1 - b3;
            }
            /* (B^T d) B, straight into the panels, a run of tiles within one panel at a time */
            for (int t = 0; t < n;) {
                const int tt = t0 + s0 + t, run = SAC_MIN(n - t, SAC_PANEL - tt % SAC_PANEL);
                const size_t at = panel_at(tt, c, C);
                for (int i = 0; i < 4; i++) {
                    const float *restrict ei = e[i] + t, *restrict oi = o[i] + t;
                    float *restrict v0 = V + (size_t)(4 * i) * plane + at, *restrict v1 = v0 + plane,
                                    *restrict v2 = v1 + plane, *restrict v3 = v2 + plane;
                    for (int u = 0; u < run; u++) {
                        v0[u] = ei[u] - ei[u + 1];
                        v1[u] = oi[u] + ei[u + 1];
                        v2[u] = ei[u + 1] - oi[u];
                        v3[u] = oi[u] - oi[u + 1];
                    }
                }
                t += run;
            }
        }
    }
}

/* The input transform per kernel path: the same C, vectorised by the compiler for each. */
#define INPUT_TILE_ROW_PARAMS \
    (float *V, size_t plane, int t0, const float *img, int C, int c0, int c1, int H, int W, int ty, int tw)
SAC_CLONES(input_tile_row, INPUT_TILE_ROW_PARAMS, (V, plane, t0, img, C, c0, c1, H, W, ty, tw))
typedef void (*InputTileRowFn) INPUT_TILE_ROW_PARAMS;
static const InputTileRowFn input_tile_row_fns[] = SAC_KERNEL_TABLE(input_tile_row);

/* Tiles [t, tw) of output_tile_row, one at a time. */
static inline SAC_ALWAYS_INLINE void output_tiles(float *o0, float *o1, const float *M, size_t plane, int W, int t,
                                                  int tw, int two_rows, float bias, int relu, int accumulate)
{
    for (; t < tw; t++) {
        float m[16];
        for (int xi = 0; xi < 16; xi++) m[xi] = M[xi * plane + t];
        float y[2][2];
        for (int a = 0; a < 2; a++) {
            float sa[4];
            for (int j = 0; j < 4; j++) sa[j] = a ? m[4 + j] - m[8 + j] - m[12 + j] : m[j] + m[4 + j] + m[8 + j];
            y[a][0] = sa[0] + sa[1] + sa[2] + bias;
            y[a][1] = sa[1] - sa[2] - sa[3] + bias;
            if (relu) y[a][0] = y[a][0] > 0.0f ? y[a][0] : 0.0f, y[a][1] = y[a][1] > 0.0f ? y[a][1] : 0.0f;
        }
        for (int a = 0; a < 1 + two_rows; a++) {
            float *o = a ? o1 : o0;
            o[2 * t] = accumulate ? o[2 * t] + y[a][0] : y[a][0];
            if (2 * t + 1 < W) o[2 * t + 1] = accumulate ? o[2 * t + 1] + y[a][1] : y[a][1];
        }
    }
}

/* out rows 2ty, 2ty + 1 (of one channel of one image) from M[xi][n0 + t], planes `plane` apart.
 * The AVX2 path takes 8 tiles at a time with the same operations in the same order (no fused
 * multiply-add): every path gives the same bits. */
static void output_tile_row_c(float *out, const float *M, size_t plane, int H, int W, int ty, int tw, float bias,
                              int relu, int accumulate)
{
    float *o0 = out + (size_t)2 * ty * W, *o1 = o0 + W;
    output_tiles(o0, o1, M, plane, W, 0, tw, 2 * ty + 1 < H, bias, relu, accumulate);
}

#if SAC_KERNEL_X86
SAC_TARGET_AVX2 static void output_tile_row_avx2(float *out, const float *M, size_t plane, int H, int W, int ty,
                                                 int tw, float bias, int relu, int accumulate)
{
    float *o0 = out + (size_t)2 * ty * W, *o1 = o0 + W;
    const int two_rows = 2 * ty + 1 < H, full = W / 2; /* tiles with both columns inside */
    int t = 0;
    const __m256 vb = _mm256_set1_ps(bias), zero = _mm256_setzero_ps();
    for (; t + 8 <= full; t += 8) {
        __m256 m[16];
        for (int xi = 0; xi < 16; xi++) m[xi] = _mm256_loadu_ps(M + xi * plane + t);
        __m256 s0[4], s1[4]; /* A^T M */
        for (int j = 0; j < 4; j++) {
            s0[j] = _mm256_add_ps(_mm256_add_ps(m[j], m[4 + j]), m[8 + j]);
            s1[j] = _mm256_sub_ps(_mm256_sub_ps(m[4 + j], m[8 + j]), m[12 + j]);
        }
        for (int a = 0; a < 2 - !two_rows; a++) {
            const __m256 *sa = a ? s1 : s0;
            __m256 y0 = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(sa[0], sa[1]), sa[2]), vb);
            __m256 y1 = _mm256_add_ps(_mm256_sub_ps(_mm256_sub_ps(sa[1], sa[2]), sa[3]), vb);
            if (relu) y0 = _mm256_max_ps(y0, zero), y1 = _mm256_max_ps(y1, zero);
            /* interleave: pixels 2t, 2t + 1, ... */
            const __m256 lo = _mm256_unpacklo_ps(y0, y1), hi = _mm256_unpackhi_ps(y0, y1);
            float *o = a ? o1 : o0;
            __m256 r0 = _mm256_permute2f128_ps(lo, hi, 0x20), r1 = _mm256_permute2f128_ps(lo, hi, 0x31);
            if (accumulate)
                r0 = _mm256_add_ps(r0, _mm256_loadu_ps(o + 2 * t)), r1 = _mm256_add_ps(r1, _mm256_loadu_ps(o + 2 * t + 8));
            _mm256_storeu_ps(o + 2 * t, r0);
            _mm256_storeu_ps(o + 2 * t + 8, r1);
        }
    }
    output_tiles(o0, o1, M, plane, W, t, tw, two_rows, bias, relu, accumulate);
}
#define output_tile_row_avx512 output_tile_row_avx2 /* 8 tiles at a time are enough here */
#endif

typedef void (*OutputTileRowFn)(float *out, const float *M, size_t plane, int H, int W, int ty, int tw, float bias,
                                int relu, int accumulate);
static const OutputTileRowFn output_tile_row_fns[] = SAC_KERNEL_TABLE(output_tile_row);

typedef struct {
    const WinoPlan *pl;
    float *out, *V, *M;
    const float *inp, *U, *bias;
    int C, H, W, OC, relu, accumulate, q0, nq, n;
} WinoTask;

/* V of channels [c0, c1) for the nq tile rows from q0 (image q / th, tile row q % th): the input
 * transform of the forward and of the weight gradient alike. */
static void input_rows(const WinoPlan *pl, float *V, const float *inp, int C, int H, int W, int q0, int nq, int c0,
                       int c1)
{
    const size_t in_img = (size_t)C * H * W;
    const InputTileRowFn input_tile_row = input_tile_row_fns[sac_kernel()];
    for (int k = 0; k < nq; k++) {
        const int q = q0 + k, b = q / pl->th, ty = q % pl->th;
        input_tile_row(V, (size_t)C * pl->ld, k * pl->tw, inp + b * in_img, C, c0, c1, H, W, ty, pl->tw);
    }
}

static void input_task(void *arg, int c0, int c1, int chunk)
{
    (void)chunk;
    const WinoTask *t = arg;
    input_rows(t->pl, t->V, t->inp, t->C, t->H, t->W, t->q0, t->nq, c0, c1);
}

/* ---- the 16 products M[xi] (OC, ldm) = U[xi] (OC, C) @ V[xi] (C, tiles) ----
 * V[xi] is stored as panels of SAC_PANEL tiles, k-major (panel_at). A register block is NR
 * output channels by NP panels: per channel c, NP vectors of V and NR broadcasts of U feed
 * NR * NP fused multiply-adds, the block's V panels staying in L1 while the row blocks pass.
 * Each output is one chain of multiply-adds over c = 0, 1, ... from zero, on every path and
 * for every blocking: the AVX2 and AVX-512 paths give the same bits (the C path rounds the
 * product separately). Rows of M are ldm apart (whole panels), so a block always stores whole
 * panels. */
static void wino_gemm_c(float *M, int ldm, const float *V, int C, int panels, const float *U, int OC)
{
    for (int j = 0; j < panels; j++)
        for (int o = 0; o < OC; o++) {
            float acc[SAC_PANEL] = {0};
            const float *u = U + (size_t)o * C, *v = V + (size_t)j * C * SAC_PANEL;
            for (int c = 0; c < C; c++)
                for (int i = 0; i < SAC_PANEL; i++) acc[i] += u[c] * v[(size_t)c * SAC_PANEL + i];
            memcpy(M + (size_t)o * ldm + (size_t)j * SAC_PANEL, acc, sizeof(acc));
        }
}

#if SAC_KERNEL_X86
/* AVX-512: one vector per panel; blocks of up to 8 channels by 2 panels (16 accumulators). */
SAC_TARGET_AVX512 static inline SAC_ALWAYS_INLINE void wino_block_avx512(float *M, int ldm, const float *V, int C,
                                                                         const float *U, int NR, int NP)
{
    __m512 acc[8][2];
    _Pragma("GCC unroll 8") for (int r = 0; r < NR; r++)
        _Pragma("GCC unroll 2") for (int p = 0; p < NP; p++) acc[r][p] = _mm512_setzero_ps();
    const size_t pstride = (size_t)C * SAC_PANEL;
    for (int c = 0; c < C; c++) {
        __m512 v[2];
        _Pragma("GCC unroll 2") for (int p = 0; p < NP; p++) v[p] = _mm512_loadu_ps(V + p * pstride + (size_t)c * SAC_PANEL);
        _Pragma("GCC unroll 8") for (int r = 0; r < NR; r++) {
            const __m512 u = _mm512_set1_ps(U[(size_t)r * C + c]);
            _Pragma("GCC unroll 2") for (int p = 0; p < NP; p++) acc[r][p] = _mm512_fmadd_ps(u, v[p], acc[r][p]);
        }
    }
    _Pragma("GCC unroll 8") for (int r = 0; r < NR; r++)
        _Pragma("GCC unroll 2") for (int p = 0; p < NP; p++) _mm512_storeu_ps(M + (size_t)r * ldm + p * SAC_PANEL, acc[r][p]);
}

SAC_TARGET_AVX512 static void wino_gemm_avx512(float *M, int ldm, const float *V, int C, int panels, const float *U,
                                               int OC)
{
    for (int j = 0; j < panels; j += 2) {
        const int np = SAC_MIN(2, panels - j);
        const float *vj = V + (size_t)j * C * SAC_PANEL;
        float *mj = M + (size_t)j * SAC_PANEL;
        for (int o = 0; o < OC; o += 8) {
            const int nr = SAC_MIN(8, OC - o);
            float *m = mj + (size_t)o * ldm;
            const float *u = U + (size_t)o * C;
            if (np == 2) {
                switch (nr) {
                case 8: wino_block_avx512(m, ldm, vj, C, u, 8, 2); break;
                case 7: wino_block_avx512(m, ldm, vj, C, u, 7, 2); break;
                case 6: wino_block_avx512(m, ldm, vj, C, u, 6, 2); break;
                case 5: wino_block_avx512(m, ldm, vj, C, u, 5, 2); break;
                case 4: wino_block_avx512(m, ldm, vj, C, u, 4, 2); break;
                case 3: wino_block_avx512(m, ldm, vj, C, u, 3, 2); break;
                case 2: wino_block_avx512(m, ldm, vj, C, u, 2, 2); break;
                default: wino_block_avx512(m, ldm, vj, C, u, 1, 2); break;
                }
            } else {
                switch (nr) {
                case 8: wino_block_avx512(m, ldm, vj, C, u, 8, 1); break;
                case 7: wino_block_avx512(m, ldm, vj, C, u, 7, 1); break;
                case 6: wino_block_avx512(m, ldm, vj, C, u, 6, 1); break;
                case 5: wino_block_avx512(m, ldm, vj, C, u, 5, 1); break;
                case 4: wino_block_avx512(m, ldm, vj, C, u, 4, 1); break;
                case 3: wino_block_avx512(m, ldm, vj, C, u, 3, 1); break;
                case 2: wino_block_avx512(m, ldm, vj, C, u, 2, 1); break;
                default: wino_block_avx512(m, ldm, vj, C, u, 1, 1); break;
                }
            }
        }
    }
}

/* AVX2: two vectors per panel; blocks of up to 6 channels by 1 panel (12 accumulators). */
SAC_TARGET_AVX2 static inline SAC_ALWAYS_INLINE void wino_block_avx2(float *M, int ldm, const float *V, int C,
                                                                     const float *U, int NR)
{
    __m256 acc[6][2];
    _Pragma("GCC unroll 6") for (int r = 0; r < NR; r++) acc[r][0] = acc[r][1] = _mm256_setzero_ps();
    for (int c = 0; c < C; c++) {
        const __m256 v0 = _mm256_loadu_ps(V + (size_t)c * SAC_PANEL), v1 = _mm256_loadu_ps(V + (size_t)c * SAC_PANEL + 8);
        _Pragma("GCC unroll 6") for (int r = 0; r < NR; r++) {
            const __m256 u = _mm256_broadcast_ss(U + (size_t)r * C + c);
            acc[r][0] = _mm256_fmadd_ps(u, v0, acc[r][0]);
            acc[r][1] = _mm256_fmadd_ps(u, v1, acc[r][1]);
        }
    }
    _Pragma("GCC unroll 6") for (int r = 0; r < NR; r++) {
        _mm256_storeu_ps(M + (size_t)r * ldm, acc[r][0]);
        _mm256_storeu_ps(M + (size_t)r * ldm + 8, acc[r][1]);
    }
}

SAC_TARGET_AVX2 static void wino_gemm_avx2(float *M, int ldm, const float *V, int C, int panels, const float *U,
                                           int OC)
{
    for (int j = 0; j < panels; j++) {
        const float *vj = V + (size_t)j * C * SAC_PANEL;
        float *mj = M + (size_t)j * SAC_PANEL;
        for (int o = 0; o < OC; o += 6) {
            float *m = mj + (size_t)o * ldm;
            const float *u = U + (size_t)o * C;
            switch (SAC_MIN(6, OC - o)) {
            case 6: wino_block_avx2(m, ldm, vj, C, u, 6); break;
            case 5: wino_block_avx2(m, ldm, vj, C, u, 5); break;
            case 4: wino_block_avx2(m, ldm, vj, C, u, 4); break;
            case 3: wino_block_avx2(m, ldm, vj, C, u, 3); break;
            case 2: wino_block_avx2(m, ldm, vj, C, u, 2); break;
            default: wino_block_avx2(m, ldm, vj, C, u, 1); break;
            }
        }
    }
}
#endif

typedef void (*WinoGemmFn)(float *M, int ldm, const float *V, int C, int panels, const float *U, int OC);
static const WinoGemmFn wino_gemm_fns[] = SAC_KERNEL_TABLE(wino_gemm);

static void gemm_task(void *arg, int x0, int x1, int chunk)
{
    (void)chunk;
    const WinoTask *t = arg;
    const size_t vplane = (size_t)t->C * t->pl->ld, mplane = (size_t)t->OC * t->pl->ld;
    const int panels = (t->n + SAC_PANEL - 1) / SAC_PANEL;
    const WinoGemmFn gemm = wino_gemm_fns[sac_kernel()];
    for (int xi = x0; xi < x1; xi++)
        gemm(t->M + xi * mplane, panels * SAC_PANEL, t->V + xi * vplane, t->C, panels, t->U + (size_t)xi * t->OC * t->C,
             t->OC);
}

static void output_task(void *arg, int o0, int o1, int chunk)
{
    (void)chunk;
    const WinoTask *t = arg;
    const WinoPlan *pl = t->pl;
    const size_t out_img = (size_t)t->OC * t->H * t->W, mplane = (size_t)t->OC * pl->ld;
    const OutputTileRowFn output_tile_row = output_tile_row_fns[sac_kernel()];
    const size_t ldm = (size_t)(t->n + SAC_PANEL - 1) / SAC_PANEL * SAC_PANEL; /* M's rows: whole panels */
    for (int k = 0; k < t->nq; k++) {
        const int q = t->q0 + k, b = q / pl->th, ty = q % pl->th;
        for (int o = o0; o < o1; o++)
            output_tile_row(t->out + b * out_img + (size_t)o * t->H * t->W, t->M + (size_t)o * ldm + k * pl->tw,
                            mplane, t->H, t->W, ty, pl->tw, t->bias ? t->bias[o] : 0.0f, t->relu, t->accumulate);
    }
}

void winograd_forward(float *out, float *scratch, const float *inp, const float *U, const float *bias, int B,
                      int C, int H, int W, int OC, int mode)
{
    const WinoPlan pl = wino_plan(C, OC, H, W);
    const size_t vplane = (size_t)C * pl.ld;
    WinoTask t = {&pl, out, scratch, scratch + 16 * vplane, inp, U, bias, C, H, W, OC,
                  mode == WINO_RELU, mode == WINO_ACCUMULATE, 0, 0, 0};
    const int total = B * pl.th; /* tile rows of the batch */
    /* three phases, each split across the pool when called from outside it (one image); from
     * a pool task (a chunk of a batch) they run in the calling thread */
    for (t.q0 = 0; t.q0 < total; t.q0 += pl.rows) {
        t.nq = SAC_MIN(pl.rows, total - t.q0), t.n = t.nq * pl.tw;
        sac_parallel_for(C, 8, input_task, &t);
        /* zero the unused tiles of the last panel (their outputs are not stored, but keep
         * them finite) */
        for (int tt = t.n; tt % SAC_PANEL; tt++)
            for (int c = 0; c < C; c++)
                for (int xi = 0; xi < 16; xi++) t.V[xi * vplane + panel_at(tt, c, C)] = 0.0f;
        sac_parallel_for(16, 1, gemm_task, &t);
        sac_parallel_for(OC, 8, output_task, &t);
    }
}

/* ---- the weight gradient ----
 * The forward is out = A^T [sum_c U[o][c] . V[c]] A per tile, U = G g G^T, so
 *   dU[xi][o][c] = sum over tiles of dM[xi][o][t] V[xi][c][t],   dM = A dY A^T (per tile),
 *   dg = G^T dU G,
 * the exact adjoint of winograd_forward's arithmetic. V is the forward's input transform (the
 * same panels); dM is written output channel innermost, dMt (16, tiles, OCp) with OCp = OC
 * rounded up to 16 (zero past OC), and dU likewise, dUt (16, C, OCp), so that the products
 * dUt[xi] (C, OCp) += V[xi]^T (C, n) @ dMt[xi] (n, OCp) broadcast V and load whole vectors of
 * output channels, accumulating over the tiles in order (one multiply-add chain per element
 * from zero across all chunks). */

static int wino_ocp(int OC) { return (OC + 15) / 16 * 16; }

/* dUt planes: one cache line more than C * OCp apart, so that the 16 planes read together by
 * the final transform do not map to the same cache sets */
static size_t wgrad_uplane(int C, int OC) { return (size_t)C * wino_ocp(OC) + 16; }

size_t winograd_wgrad_scratch_floats(int C, int OC, int H, int W)
{
    const WinoPlan pl = wino_plan(C, wino_ocp(OC), H, W);
    return (size_t)16 * C * pl.ld + (size_t)16 * pl.ld * wino_ocp(OC) + 16 * wgrad_uplane(C, OC);
}

/* dMt[xi][t][o] for output channels [o0, o0 + 16) of the tw tiles of tile row ty of one image's
 * output gradient dy (OC, H, W), as tiles t0 .. t0 + tw - 1 (rows of ld floats, planes `plane`
 * apart). dY outside the image (odd sides) is zero. */
static inline SAC_ALWAYS_INLINE void dm_tile_row_body(float *dM, size_t plane, int ld, int t0, const float *dy, int OC,
                                                      int o0, int H, int W, int ty, int tw)
{
    const int no = SAC_MIN(16, OC - o0), two_rows = 2 * ty + 1 < H;
    for (int s0 = 0; s0 < tw; s0 += WINO_SEG) {
        const int n = SAC_MIN(WINO_SEG, tw - s0), x0 = 2 * s0, nx = SAC_MIN(2 * n, W - x0);
        float d[2][2 * WINO_SEG][16]; /* the two output rows of these tiles, channel innermost */
        if (no < 16 || nx < 2 * n || !two_rows) /* zero where nothing is copied below */
            for (int a = 0; a < 2; a++) memset(d[a], 0, sizeof(float) * 16 * 2 * n);
        for (int a = 0; a < 1 + two_rows; a++)
            for (int o = 0; o < no; o++) {
                const float *row = dy + ((size_t)(o0 + o) * H + 2 * ty + a) * W + x0;
                for (int x = 0; x < nx; x++) d[a][x][o] = row[x];
            }
        for (int t = 0; t < n; t++) {
            float *m = dM + (size_t)(t0 + s0 + t) * ld + o0;
            /* dM = A dY A^T: across each row r_a[j] = s_j(y_a0, y_a1), s = (y0, y0 + y1, y0 - y1,
             * -y1); then down the columns dM[i][j] = s_i(r_0[j], r_1[j]) */
            float r[2][4][16];
            for (int a = 0; a < 2; a++)
                for (int o = 0; o < 16; o++) {
                    const float y0 = d[a][2 * t][o], y1 = d[a][2 * t + 1][o];
                    r[a][0][o] = y0, r[a][1][o] = y0 + y1, r[a][2][o] = y0 - y1, r[a][3][o] = -y1;
                }
            for (int j = 0; j < 4; j++)
                for (int o = 0; o < 16; o++) {
                    const float a0 = r[0][j][o], a1 = r[1][j][o];
                    m[(size_t)j * plane + o] = a0;
                    m[(size_t)(4 + j) * plane + o] = a0 + a1;
                    m[(size_t)(8 + j) * plane + o] = a0 - a1;
                    m[(size_t)(12 + j) * plane + o] = -a1;
                }
        }
    }
}

#define DM_TILE_ROW_PARAMS \
    (float *dM, size_t plane, int ld, int t0, const float *dy, int OC, int o0, int H, int W, int ty, int tw)
SAC_CLONES(dm_tile_row, DM_TILE_ROW_PARAMS, (dM, plane, ld, t0, dy, OC, o0, H, W, ty, tw))
typedef void (*DmTileRowFn) DM_TILE_ROW_PARAMS;
static const DmTileRowFn dm_tile_row_fns[] = SAC_KERNEL_TABLE(dm_tile_row);

/* dU (C, ldu) += V^T @ dM over tiles [0, n): V in panels (panel_at), dM (n, ldu). */
static void wgrad_gemm_c(float *dU, int ldu, const float *V, int C, const float *dM, int n)
{
    for (int c = 0; c < C; c++)
        for (int o0 = 0; o0 < ldu; o0 += 16) {
            float acc[16];
            memcpy(acc, dU + (size_t)c * ldu + o0, sizeof(acc));
            for (int t = 0; t < n; t++) {
                const float v = V[panel_at(t, c, C)];
                const float *m = dM + (size_t)t * ldu + o0;
                for (int i = 0; i < 16; i++) acc[i] += v * m[i];
            }
            memcpy(dU + (size_t)c * ldu + o0, acc, sizeof(acc));
        }
}

#if SAC_KERNEL_X86
/* AVX-512: blocks of up to 8 input channels by 2 vectors of output channels. */
SAC_TARGET_AVX512 static inline SAC_ALWAYS_INLINE void wgrad_block_avx512(float *dU, int ldu, const float *V, int C,
                                                                          int c0, const float *dM, int n, int NR,
                                                                          int NS)
{
    __m512 acc[8][2];
    _Pragma("GCC unroll 8") for (int r = 0; r < NR; r++)
        _Pragma("GCC unroll 2") for (int s = 0; s < NS; s++) acc[r][s] = _mm512_loadu_ps(dU + (size_t)r * ldu + 16 * s);
    for (int t = 0; t < n; t++) {
        const float *v = V + panel_at(t, c0, C); /* channel c0 + r at v[r * SAC_PANEL] */
        __m512 m[2];
        _Pragma("GCC unroll 2") for (int s = 0; s < NS; s++) m[s] = _mm512_loadu_ps(dM + (size_t)t * ldu + 16 * s);
        _Pragma("GCC unroll 8") for (int r = 0; r < NR; r++) {
            const __m512 b = _mm512_set1_ps(v[r * SAC_PANEL]);
            _Pragma("GCC unroll 2") for (int s = 0; s < NS; s++) acc[r][s] = _mm512_fmadd_ps(b, m[s], acc[r][s]);
        }
    }
    _Pragma("GCC unroll 8") for (int r = 0; r < NR; r++)
        _Pragma("GCC unroll 2") for (int s = 0; s < NS; s++) _mm512_storeu_ps(dU + (size_t)r * ldu + 16 * s, acc[r][s]);
}

#define WGRAD_ROWS(f, ns)                                                                                              \
    switch (nr) {                                                                                                      \
    case 8: f(u, ldu, V, C, c, m, n, 8, ns); break;                                                                    \
    case 7: f(u, ldu, V, C, c, m, n, 7, ns); break;                                                                    \
    case 6: f(u, ldu, V, C, c, m, n, 6, ns); break;                                                                    \
    case 5: f(u, ldu, V, C, c, m, n, 5, ns); break;                                                                    \
    case 4: f(u, ldu, V, C, c, m, n, 4, ns); break;                                                                    \
    case 3: f(u, ldu, V, C, c, m, n, 3, ns); break;                                                                    \
    case 2: f(u, ldu, V, C, c, m, n, 2, ns); break;                                                                    \
    default: f(u, ldu, V, C, c, m, n, 1, ns); break;                                                                   \
    }

SAC_TARGET_AVX512 static void wgrad_gemm_avx512(float *dU, int ldu, const float *V, int C, const float *dM, int n)
{
    for (int o = 0; o < ldu; o += 32) {
        const int ns = SAC_MIN(2, (ldu - o) / 16);
        const float *m = dM + o;
        for (int c = 0; c < C; c += 8) {
            const int nr = SAC_MIN(8, C - c);
            float *u = dU + (size_t)c * ldu + o;
            if (ns == 2) {
                WGRAD_ROWS(wgrad_block_avx512, 2)
            } else {
                WGRAD_ROWS(wgrad_block_avx512, 1)
            }
        }
    }
}

/* AVX2: blocks of up to 6 input channels by 16 output channels (two vectors). */
SAC_TARGET_AVX2 static inline SAC_ALWAYS_INLINE void wgrad_block_avx2(float *dU, int ldu, const float *V, int C,
                                                                      int c0, const float *dM, int n, int NR, int NS)
{
    (void)NS;
    __m256 acc[6][2];
    _Pragma("GCC unroll 6") for (int r = 0; r < NR; r++) {
        acc[r][0] = _mm256_loadu_ps(dU + (size_t)r * ldu);
        acc[r][1] = _mm256_loadu_ps(dU + (size_t)r * ldu + 8);
    }
    for (int t = 0; t < n; t++) {
        const float *v = V + panel_at(t, c0, C);
        const __m256 m0 = _mm256_loadu_ps(dM + (size_t)t * ldu), m1 = _mm256_loadu_ps(dM + (size_t)t * ldu + 8);
        _Pragma("GCC unroll 6") for (int r = 0; r < NR; r++) {
            const __m256 b = _mm256_broadcast_ss(v + r * SAC_PANEL);
            acc[r][0] = _mm256_fmadd_ps(b, m0, acc[r][0]);
            acc[r][1] = _mm256_fmadd_ps(b, m1, acc[r][1]);
        }
    }
    _Pragma("GCC unroll 6") for (int r = 0; r < NR; r++) {
        _mm256_storeu_ps(dU + (size_t)r * ldu, acc[r][0]);
        _mm256_storeu_ps(dU + (size_t)r * ldu + 8, acc[r][1]);
    }
}

SAC_TARGET_AVX2 static void wgrad_gemm_avx2(float *dU, int ldu, const float *V, int C, const float *dM, int n)
{
    for (int o = 0; o < ldu; o += 16) {
        const float *m = dM + o;
        for (int c = 0; c < C; c += 6) {
            float *u = dU + (size_t)c * ldu + o;
            switch (SAC_MIN(6, C - c)) {
            case 6: wgrad_block_avx2(u, ldu, V, C, c, m, n, 6, 1); break;
            case 5: wgrad_block_avx2(u, ldu, V, C, c, m, n, 5, 1); break;
            case 4: wgrad_block_avx2(u, ldu, V, C, c, m, n, 4, 1); break;
            case 3: wgrad_block_avx2(u, ldu, V, C, c, m, n, 3, 1); break;
            case 2: wgrad_block_avx2(u, ldu, V, C, c, m, n, 2, 1); break;
            default: wgrad_block_avx2(u, ldu, V, C, c, m, n, 1, 1); break;
            }
        }
    }
}
#endif

typedef void (*WgradGemmFn)(float *dU, int ldu, const float *V, int C, const float *dM, int n);
static const WgradGemmFn wgrad_gemm_fns[] = SAC_KERNEL_TABLE(wgrad_gemm);

typedef struct {
    const WinoPlan *pl;
    float *V, *dM, *dU;
    const float *inp, *dout;
    float *dweight;
    int C, H, W, OC, q0, nq, n;
} WgradTask;

static void wgrad_input_task(void *arg, int c0, int c1, int chunk)
{
    (void)chunk;
    const WgradTask *t = arg;
    input_rows(t->pl, t->V, t->inp, t->C, t->H, t->W, t->q0, t->nq, c0, c1);
}

/* output channels [16 * j0, 16 * j1) */
static void wgrad_dm_task(void *arg, int j0, int j1, int chunk)
{
    (void)chunk;
    const WgradTask *t = arg;
    const WinoPlan *pl = t->pl;
    const int ocp = wino_ocp(t->OC);
    const size_t out_img = (size_t)t->OC * t->H * t->W, plane = (size_t)pl->ld * ocp;
    const DmTileRowFn dm_tile_row = dm_tile_row_fns[sac_kernel()];
    for (int j = j0; j < j1; j++)
        for (int k = 0; k < t->nq; k++) {
            const int q = t->q0 + k, b = q / pl->th, ty = q % pl->th;
            dm_tile_row(t->dM, plane, ocp, k * pl->tw, t->dout + b * out_img, t->OC, 16 * j, t->H, t->W, ty, pl->tw);
        }
}

static void wgrad_gemm_task(void *arg, int x0, int x1, int chunk)
{
    (void)chunk;
    const WgradTask *t = arg;
    const int ocp = wino_ocp(t->OC);
    const size_t vplane = (size_t)t->C * t->pl->ld, mplane = (size_t)t->pl->ld * ocp, uplane = wgrad_uplane(t->C, t->OC);
    const WgradGemmFn gemm = wgrad_gemm_fns[sac_kernel()];
    for (int xi = x0; xi < x1; xi++) gemm(t->dU + xi * uplane, ocp, t->V + xi * vplane, t->C, t->dM + xi * mplane, t->n);
}

/* dweight[o][c] += G^T dU[o][c] G for output channels [o0, o1) */
static void wgrad_final_task(void *arg, int o0, int o1, int chunk)
{
    (void)chunk;
    const WgradTask *t = arg;
    const int ocp = wino_ocp(t->OC), C = t->C;
    const size_t uplane = wgrad_uplane(C, t->OC);
    for (int o = o0; o < o1; o++)
        for (int c = 0; c < C; c++) {
            float u[4][4], g[4][3];
            for (int xi = 0; xi < 16; xi++) u[xi / 4][xi % 4] = t->dU[xi * uplane + (size_t)c * ocp + o];
            /* U = G g G^T, G = [1 0 0; 1/2 1/2 1/2; 1/2 -1/2 1/2; 0 0 1]: dg = G^T dU G */
            for (int i = 0; i < 4; i++) { /* (dU G)[i][l] */
                g[i][0] = u[i][0] + 0.5f * (u[i][1] + u[i][2]);
                g[i][1] = 0.5f * (u[i][1] - u[i][2]);
                g[i][2] = 0.5f * (u[i][1] + u[i][2]) + u[i][3];
            }
            float *dw = t->dweight + ((size_t)o * C + c) * 9;
            for (int l = 0; l < 3; l++) { /* G^T (dU G) */
                dw[l] += g[0][l] + 0.5f * (g[1][l] + g[2][l]);
                dw[3 + l] += 0.5f * (g[1][l] - g[2][l]);
                dw[6 + l] += 0.5f * (g[1][l] + g[2][l]) + g[3][l];
            }
        }
}

void winograd_weight_grad(float *dweight, float *scratch, const float *inp, const float *dout, int B, int C, int H,
                          int W, int OC)
{
    const int ocp = wino_ocp(OC);
    const WinoPlan pl = wino_plan(C, ocp, H, W);
    WgradTask t = {&pl, scratch, scratch + (size_t)16 * C * pl.ld, NULL, inp, dout, dweight, C, H, W, OC, 0, 0, 0};
    t.dU = t.dM + (size_t)16 * pl.ld * ocp;
    memset(t.dU, 0, sizeof(float) * 16 * wgrad_uplane(C, OC));
    const int total = B * pl.th;
    for (t.q0 = 0; t.q0 < total; t.q0 += pl.rows) {
        t.nq = SAC_MIN(pl.rows, total - t.q0), t.n = t.nq * pl.tw;
        sac_parallel_for(C, 8, wgrad_input_task, &t);
        sac_parallel_for(ocp / 16, 1, wgrad_dm_task, &t);
        sac_parallel_for(16, 1, wgrad_gemm_task, &t);
    }
    sac_parallel_for(OC, 8, wgrad_final_task, &t);
}

/*
 * packed_tmpl.c - the SIMD kernel of sac_packed_matmul, included by matmul.c once per kernel path
 * (the template idea of dav1d's *_tmpl.c). The includer defines:
 *   PK(name)      name with the path's suffix (packed_block_avx2, ...)
 *   PK_TARGET     the path's target attribute (common/cpu.h)
 *   PK_VEC        the register type; PK_LANES floats in one (8 or 16, dividing SAC_PANEL)
 *   PK_ZERO(), PK_LOAD(p), PK_LOAD_HALF(p) (PK_LANES fp16 values widened), PK_BCAST(p) (*p in
 *   every lane), PK_FMA(a, b, c) (a * b + c, one rounding), PK_STORE(p, v)
 * Every output is a chain of fused multiply-adds over k = 0, 1, ... from zero, whatever the path,
 * the vector width or the blocking: the AVX2 and AVX-512 paths give the same bits.
 */

/* Rows 0..NR-1 (x rows ldx apart) times NP panels from panel j: y (rows ldy apart), nout outputs. */
PK_TARGET static inline SAC_ALWAYS_INLINE void PK(packed_block)(float *y, int ldy, const SacPacked *W, int j,
                                                                int nout, const float *x, int ldx, int NR, int NP,
                                                                int accumulate)
{
    enum { PER = SAC_PANEL / PK_LANES }; /* vectors per panel */
    const int K = W->K;
    PK_VEC acc[6][2 * PER];
    _Pragma("GCC unroll 8")
    for (int i = 0; i < NR; i++)
        _Pragma("GCC unroll 8")
        for (int c = 0; c < NP * PER; c++) acc[i][c] = PK_ZERO();
    const size_t stride = (size_t)K * SAC_PANEL; /* elements from one panel to the next */
    if (W->half) {
        const uint16_t *w = (const uint16_t *)W->data + (size_t)j * stride;
        for (int k = 0; k < K; k++, w += SAC_PANEL) {
            PK_VEC wv[2 * PER];
            _Pragma("GCC unroll 8")
            for (int p = 0; p < NP; p++)
                _Pragma("GCC unroll 8")
                for (int v = 0; v < PER; v++) wv[p * PER + v] = PK_LOAD_HALF(w + p * stride + v * PK_LANES);
            _Pragma("GCC unroll 8")
            for (int i = 0; i < NR; i++) {
                const PK_VEC xb = PK_BCAST(x + (size_t)i * ldx + k);
                _Pragma("GCC unroll 8")
                for (int c = 0; c < NP * PER; c++) acc[i][c] = PK_FMA(wv[c], xb, acc[i][c]);
            }
        }
    } else {
        const float *w = (const float *)W->data + (size_t)j * stride;
        for (int k = 0; k < K; k++, w += SAC_PANEL) {
            PK_VEC wv[2 * PER];
            _Pragma("GCC unroll 8")
            for (int p = 0; p < NP; p++)
                _Pragma("GCC unroll 8")
                for (int v = 0; v < PER; v++) wv[p * PER + v] = PK_LOAD(w + p * stride + v * PK_LANES);
            _Pragma("GCC unroll 8")
            for (int i = 0; i < NR; i++) {
                const PK_VEC xb = PK_BCAST(x + (size_t)i * ldx + k);
                _Pragma("GCC unroll 8")
                for (int c = 0; c < NP * PER; c++) acc[i][c] = PK_FMA(wv[c], xb, acc[i][c]);
            }
        }
    }
    _Pragma("GCC unroll 8")
    for (int i = 0; i < NR; i++) {
        float out[2 * SAC_PANEL];
        _Pragma("GCC unroll 8")
        for (int c = 0; c < NP * PER; c++) PK_STORE(out + PK_LANES * c, acc[i][c]);
        float *d = y + (size_t)i * ldy;
        const int n = SAC_MIN(nout, NP * SAC_PANEL);
        if (accumulate)
            for (int o = 0; o < n; o++) d[o] += out[o];
        else
            memcpy(d, out, sizeof(float) * n);
    }
}

/* sac_packed_matmul on this path: one or two rows take two panels at a time (four independent
 * sums in flight with 8-lane vectors); more rows take one panel, kept in L1, against blocks of up
 * to 6 rows. */
PK_TARGET static void PK(packed_matmul)(float *y, int ldy, const SacPacked *W, int p0, int p1, const float *x,
                                        int ldx, int R, int accumulate)
{
    if (R <= 2) {
        for (int j = p0; j < p1; j += 2) {
            const int np = SAC_MIN(2, p1 - j), nout = SAC_MIN(np * SAC_PANEL, W->O - j * SAC_PANEL);
            float *yj = y + (size_t)j * SAC_PANEL;
            if (np == 2 && R == 2) PK(packed_block)(yj, ldy, W, j, nout, x, ldx, 2, 2, accumulate);
            else if (np == 2) PK(packed_block)(yj, ldy, W, j, nout, x, ldx, 1, 2, accumulate);
            else if (R == 2) PK(packed_block)(yj, ldy, W, j, nout, x, ldx, 2, 1, accumulate);
            else PK(packed_block)(yj, ldy, W, j, nout, x, ldx, 1, 1, accumulate);
        }
        return;
    }
    for (int j = p0; j < p1; j++) {
        const int nout = SAC_MIN(SAC_PANEL, W->O - j * SAC_PANEL);
        float *yj = y + (size_t)j * SAC_PANEL;
        int r = 0;
        for (; r + 6 <= R; r += 6)
            PK(packed_block)(yj + (size_t)r * ldy, ldy, W, j, nout, x + (size_t)r * ldx, ldx, 6, 1, accumulate);
        float *yr = yj + (size_t)r * ldy;
        const float *xr = x + (size_t)r * ldx;
        switch (R - r) {
        case 5: PK(packed_block)(yr, ldy, W, j, nout, xr, ldx, 5, 1, accumulate); break;
        case 4: PK(packed_block)(yr, ldy, W, j, nout, xr, ldx, 4, 1, accumulate); break;
        case 3: PK(packed_block)(yr, ldy, W, j, nout, xr, ldx, 3, 1, accumulate); break;
        case 2: PK(packed_block)(yr, ldy, W, j, nout, xr, ldx, 2, 1, accumulate); break;
        case 1: PK(packed_block)(yr, ldy, W, j, nout, xr, ldx, 1, 1, accumulate); break;
        default: break;
        }
    }
}

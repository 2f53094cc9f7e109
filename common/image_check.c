/*
 * image_check.c - what is checked before stb_image sees an image's bytes (image_check.h): the
 * format by magic number, a JPEG's marker segments (Huffman tables, scan data against the
 * claimed size), PNM header numbers, and lower bounds on the bytes a claimed size needs.
 *
 * Size letters: none (w, h are an image's sides in pixels).
 * References: ITU-T T.81 (JPEG) B.2.4.2 (DHT), B.2.2 (SOF), B.2.3 (SOS), F.1.2.1 (one Huffman
 * code per DC difference); Adobe Photoshop File Formats (PSD header, PackBits); Truevision TGA
 * 2.0; Microsoft BITMAPINFOHEADER; Netpbm PGM/PPM; Radiance RGBE scanline encoding.
 */
#include "image_check.h"

#include <stdio.h>
#include <string.h>

#include "sac.h"

ImageFormat sac_image_format(const uint8_t *b, size_t n)
{
    static const uint8_t png_sig[8] = {137, 80, 78, 71, 13, 10, 26, 10};
    size_t p = 0;
    while (p < n && b[p] == 0xFF) p++; /* stb_image takes fill bytes before SOI */
    if (p > 0 && p < n && b[p] == 0xD8) return FMT_JPEG;
    if (n >= 8 && !memcmp(b, png_sig, 8)) return FMT_PNG;
    if (n >= 2 && b[0] == 'B' && b[1] == 'M') return FMT_BMP;
    if (n >= 6 && (!memcmp(b, "GIF87a", 6) || !memcmp(b, "GIF89a", 6))) return FMT_GIF;
    if (n >= 4 && !memcmp(b, "8BPS", 4)) return FMT_PSD;
    if (n >= 92 && !memcmp(b, "\x53\x80\xF6\x34", 4) && !memcmp(b + 88, "PICT", 4)) return FMT_PIC;
    if (n >= 2 && b[0] == 'P' && (b[1] == '5' || b[1] == '6')) return FMT_PNM;
    if ((n >= 11 && !memcmp(b, "#?RADIANCE\n", 11)) || (n >= 7 && !memcmp(b, "#?RGBE\n", 7)))
        return FMT_HDR;
    return FMT_OTHER;
}

static uint32_t be16(const uint8_t *p) { return (uint32_t)p[0] << 8 | p[1]; }
static uint32_t be32(const uint8_t *p) { return be16(p) << 16 | be16(p + 2); }
static uint32_t le16(const uint8_t *p) { return (uint32_t)p[1] << 8 | p[0]; }
static uint32_t le32(const uint8_t *p) { return le16(p + 2) << 16 | le16(p); }

/* Why one DHT segment payload d[0..n) is unusable, or NULL. Each table: class/id byte, 16 code
 * counts, then as many symbol values. The counts must sum to at most 256 (stb_image 2.27
 * writes them into arrays of 256/257 without checking first: ffd8ffc4ffc40015ff runs one past
 * the end) and must fit a prefix code (at most 2^L codes of length <= L). */
static const char *jpeg_dht_problem(const uint8_t *d, size_t n)
{
    size_t q = 0;
    while (q < n) {
        if (n - q < 17) return "a Huffman table header is cut short";
        if (d[q] >> 4 > 1 || (d[q] & 15) > 3) return "a Huffman table class or id is out of range";
        uint32_t total = 0, code = 0;
        for (int j = 0; j < 16; j++) {
            total += d[q + 1 + j];
            code += d[q + 1 + j];
            if (code > (1u << (j + 1))) return "the Huffman code lengths are over-subscribed";
            code <<= 1;
        }
        if (total > 256) return "a Huffman table has more than 256 codes";
        if (n - q - 17 < total) return "a Huffman table has fewer symbol values than codes";
        q += 17 + total;
    }
    return NULL;
}

/* Why a scan header d[0..n) refers to a table no segment before it defined, or NULL. stb_image
 * 2.27 keeps its tables in malloc'd memory and does not track which were defined: a scan
 * naming an undefined Huffman table decodes through garbage deltas (an index 16 million
 * before the array: found by fuzz_image), an undefined quantization table multiplies by
 * garbage. Which tables a scan uses (T.81 G.1.2): baseline both; progressive DC first scans
 * the DC table, AC scans (first and refinement) the AC table, DC refinement none. */
static const char *jpeg_scan_tables_problem(const uint8_t *d, size_t n, int progressive,
                                            unsigned dc_def, unsigned ac_def, unsigned q_def,
                                            const uint8_t *comp_id, const uint8_t *comp_tq,
                                            int nc, char why[96])
{
    if (n < 1 || n < 1 + 2 * (size_t)d[0] + 3) return NULL; /* malformed: stb_image refuses it */
    unsigned ns = d[0], ss = d[1 + 2 * ns], ah = d[3 + 2 * ns] >> 4;
    for (unsigned i = 0; i < ns; i++) {
        unsigned td = d[2 + 2 * i] >> 4, ta = d[2 + 2 * i] & 15;
        if ((!progressive || (ss == 0 && ah == 0)) && td < 4 && !(dc_def >> td & 1)) {
            snprintf(why, 96, "uses DC Huffman table %u, which no DHT segment defined", td);
            return why;
        }
        if ((!progressive || ss > 0) && ta < 4 && !(ac_def >> ta & 1)) {
            snprintf(why, 96, "uses AC Huffman table %u, which no DHT segment defined", ta);
            return why;
        }
        for (int c = 0; c < nc; c++) {
            if (comp_id[c] == d[1 + 2 * i] && comp_tq[c] < 4 && !(q_def >> comp_tq[c] & 1)) {
                snprintf(why, 96, "uses quantization table %u, which no DQT segment "
                         "defined", comp_tq[c]);
                return why;
            }
        }
    }
    return NULL;
}

/* Walk every marker segment of a JPEG (all scans, so the DHT segments of a progressive file are
 * seen too), refusing a malformed DHT segment or a segment that runs past the end, and count
 * the entropy-coded bytes. Every 8 x 8 block of the full-resolution component costs at least
 * one bit (its DC difference has a Huffman code of >= 1 bit, in exactly one scan), so a header
 * claiming more blocks than 8 x the scan bytes is a truncated file that stb_image would
 * "decode" into grey padding. SAC_OK or SAC_ERR_FORMAT (logged). */
static int jpeg_check(const uint8_t *b, size_t n, const char *name, int header_only)
{
    size_t p = 0;
    while (p < n && b[p] == 0xFF) p++;
    p++; /* past D8 */
    uint32_t w = 0, h = 0;
    uint64_t scan_bytes = 0;
    int sof = 0, scans = 0, progressive = 0, nc = 0;
    unsigned dc_def = 0, ac_def = 0, q_def = 0; /* tables defined so far, one bit per id */
    uint8_t comp_id[4], comp_tq[4];
    while (p < n) {
        if (b[p] != 0xFF) { /* garbage between segments: stb_image skips it too */
            p++;
            continue;
        }
        size_t at = p;
        while (p < n && b[p] == 0xFF) p++;
        if (p >= n) break;
        unsigned m = b[p++];
        if (m == 0xD9) break;                                /* EOI */
        if (m == 0x01 || (m >= 0xD0 && m <= 0xD8)) continue; /* no length */
        if (n - p < 2 || be16(b + p) < 2 || be16(b + p) > n - p) {
            if (name)
                sac_error("%s: JPEG segment FF%02X at byte %zu runs past the end of the %zu-byte "
                      "file, expected a complete segment (truncated or corrupt)", name, m, at, n);
            return SAC_ERR_FORMAT;
        }
        size_t seg = be16(b + p);
        const uint8_t *d = b + p + 2;
        size_t dn = seg - 2;
        p += seg;
        if (m == 0xC4) {
            const char *why = jpeg_dht_problem(d, dn);
            if (why) {
                if (name)
                    sac_error("%s: JPEG Huffman table segment (DHT) at byte %zu is corrupt: %s",
                              name, at, why);
                return SAC_ERR_FORMAT;
            }
            for (size_t q = 0, total; q < dn; q += 17 + total) { /* valid: mark them defined */
                *(d[q] >> 4 ? &ac_def : &dc_def) |= 1u << (d[q] & 15);
                total = 0;
                for (int j = 0; j < 16; j++) total += d[q + 1 + j];
            }
        } else if (m == 0xDB) {
            for (size_t q = 0; q < dn && q + 1 + (d[q] >> 4 ? 128 : 64) <= dn;
                 q += 1 + (d[q] >> 4 ? 128 : 64))
                q_def |= (d[q] & 15) < 4 ? 1u << (d[q] & 15) : 0;
        } else if (m >= 0xC0 && m <= 0xCF && m != 0xC8 && m != 0xCC && !sof && dn >= 6) {
            sof = 1;
            progressive = m == 0xC2 || m == 0xC6 || m == 0xCA || m == 0xCE;
            h = be16(d + 1);
            w = be16(d + 3);
            for (nc = 0; nc < d[5] && nc < 4 && 6 + 3 * (size_t)nc + 2 < dn; nc++)
                comp_id[nc] = d[6 + 3 * nc], comp_tq[nc] = d[6 + 3 * nc + 2] & 15;
        } else if (m == 0xDA) { /* a scan: entropy-coded bytes up to the next real marker */
            char buf[96]; /* the reason (images decode on many threads: no static buffer) */
            const char *why = jpeg_scan_tables_problem(d, dn, progressive, dc_def, ac_def, q_def,
                                                       comp_id, comp_tq, nc, buf);
            if (why) {
                if (name) sac_error("%s: JPEG scan (SOS) at byte %zu %s", name, at, why);
                return SAC_ERR_FORMAT;
            }
            if (header_only) return SAC_OK; /* what stbi_info reads has been checked */
            scans++;
            size_t q = p;
            while (q < n) {
                const uint8_t *ff = memchr(b + q, 0xFF, n - q);
                if (!ff) {
                    q = n;
                    break;
                }
                q = (size_t)(ff - b);
                size_t r = q + 1;
                while (r < n && b[r] == 0xFF) r++;
                if (r < n && (b[r] == 0x00 || (b[r] >= 0xD0 && b[r] <= 0xD7))) {
                    q = r + 1; /* stuffed 0xFF or a restart marker: still scan data */
                    continue;
                }
                break;
            }
            scan_bytes += q - p;
            p = q;
        }
    }
    if (sof && w > 0 && h > 0 && !header_only) {
        uint64_t blocks = (uint64_t)((w + 7) / 8) * ((h + 7) / 8);
        if (scan_bytes * 8 < blocks) {
            if (name)
                sac_error("%s: JPEG header claims %u x %u pixels (%llu blocks of 8 x 8) but the file "
                      "holds %llu bytes of scan data in %d scan(s), expected at least %llu: "
                      "truncated", name, w, h, (unsigned long long)blocks,
                      (unsigned long long)scan_bytes, scans,
                      (unsigned long long)((blocks + 7) / 8));
            return SAC_ERR_FORMAT;
        }
    }
    return SAC_OK;
}

/* Parse a binary PNM header ("P6", width, height, maxval, each after whitespace or '#'
 * comments, as stb_image skips them, then one whitespace byte): the three values (saturated
 * at 2^32; a field without digits reads 0, as in stb_image) and the header's length, or 0
 * when it does not parse. */
static uint64_t pnm_header(const uint8_t *b, size_t n, uint64_t v[3])
{
    size_t p = 2;
    int ok = 1;
    v[0] = v[1] = v[2] = 0;
    for (int field = 0; field < 3; field++) {
        for (;;) {
            while (p < n && (b[p] == ' ' || (b[p] >= '\t' && b[p] <= '\r'))) p++;
            if (p < n && b[p] == '#') {
                while (p < n && b[p] != '\n' && b[p] != '\r') p++;
                continue;
            }
            break;
        }
        if (p >= n || b[p] < '0' || b[p] > '9') ok = 0; /* stb_image reads 0 here and goes on */
        for (; p < n && b[p] >= '0' && b[p] <= '9'; p++)
            if ((v[field] = v[field] * 10 + (b[p] - '0')) > UINT32_MAX) v[field] = UINT32_MAX;
    }
    return ok ? p + 1 : 0;
}

static uint64_t pnm_header_bytes(const uint8_t *b, size_t n)
{
    uint64_t v[3];
    return pnm_header(b, n, v);
}

/* Why a PNG's chunk list (length, type, data, CRC each) cannot be handed to stb_image, or
 * NULL: a chunk before IEND that runs past the end of the file (stb_image 2.27 allocates what
 * an IDAT claims before reading it: 99 bytes made it ask for 1.6 GB), or an empty first IDAT
 * (it then adds 0 to its NULL data pointer). Both found by fuzz_image. *at: the chunk's
 * offset. */
static const char *png_chunk_problem(const uint8_t *b, size_t n, size_t *at)
{
    size_t p = 8;
    int idat = 0;
    while (p < n) {
        *at = p;
        if (n - p < 12) return "a chunk header cut short (truncated file)";
        uint32_t len = be32(b + p);
        if (len > n - p - 12) return "a chunk that runs past the end of the file (truncated)";
        if (!memcmp(b + p + 4, "IEND", 4)) return NULL;
        if (!memcmp(b + p + 4, "IDAT", 4) && !idat++ && len == 0) return "an empty first IDAT chunk";
        p += 12 + (size_t)len;
    }
    return NULL; /* no IEND: stb_image reports it */
}

int sac_image_precheck(ImageFormat fmt, const uint8_t *buf, size_t len, const char *name,
                       int header_only)
{
    if (fmt == FMT_PIC) {
        if (name)
            sac_error("%s: a Softimage PIC image, expected JPEG/PNG/BMP/GIF/TGA/PSD/HDR/PNM",
                      name);
        return SAC_ERR_UNSUPPORTED;
    }
    if (fmt == FMT_JPEG) return jpeg_check(buf, len, name, header_only);
    size_t at;
    const char *why = fmt == FMT_PNG ? png_chunk_problem(buf, len, &at) : NULL;
    if (why) {
        if (name) sac_error("%s: PNG chunk at byte %zu: %s", name, at, why);
        return SAC_ERR_FORMAT;
    }
    if (fmt == FMT_PSD && len >= 14 && be16(buf + 12) > 3) {
        /* stb_image 2.27 "removes the white matte" of 4+ channel PSDs with float -> integer
         * conversions that are undefined for arbitrary data (found by fuzz_image) */
        if (name)
            sac_error("%s: a PSD with %u channels, expected 3 (RGB without alpha or extra "
                      "channels; save it flattened, or as PNG)", name, be16(buf + 12));
        return SAC_ERR_UNSUPPORTED;
    }
    uint64_t v[3];
    if (fmt == FMT_PNM && (pnm_header(buf, len, v), 1) &&
        (v[0] > SAC_IMAGE_MAX_SIDE || v[1] > SAC_IMAGE_MAX_SIDE || v[2] > 65535)) {
        if (name)
            sac_error("%s: PNM header claims %llu x %llu pixels with maximum %llu, expected sides "
                      "up to %d and a maximum up to 65535", name, (unsigned long long)v[0],
                      (unsigned long long)v[1], (unsigned long long)v[2], SAC_IMAGE_MAX_SIDE);
        return SAC_ERR_UNSUPPORTED;
    }
    return SAC_OK;
}

/* A lower bound on the file size a valid w x h image of this format needs (0 when unknown or
 * when the header is too short to tell; stb_image then decides). Raw formats need every sample;
 * run-length formats at least one packet per 128 (TGA, PSD) or 127 (HDR) samples. Checked
 * before decoding, so a few hundred bytes claiming millions of pixels cost no decoding time
 * (a 359-byte PSD claiming 8000 x 8000 pixels took stb_image 3 s to "decode" into padding). */
uint64_t sac_image_min_bytes(ImageFormat f, const uint8_t *b, size_t n, uint64_t w, uint64_t h,
                             int channels, int is16)
{
    uint64_t px = w * h; /* w, h <= 2^24 and px <= max_pixels: checked by the caller */
    switch (f) {
    case FMT_PSD: {
        if (n < 26) return 0;
        uint64_t ch = be16(b + 12), depth = be16(b + 22), p = 26;
        for (int k = 0; k < 3; k++) { /* colour mode data, image resources, layers */
            if (n < 4 || p > n - 4) return 0;
            p += 4 + (uint64_t)be32(b + p);
        }
        if (p > n - 2) return p + 2;
        unsigned compression = be16(b + p);
        p += 2;
        uint64_t used = ch < 4 ? ch : 4;
        if (compression == 0) return p + px * used * (depth == 16 ? 2 : 1);
        return p + h * ch * 2 + used * 2 * ((px + 127) / 128);
    }
    case FMT_BMP: {
        if (n < 30) return 0;
        uint32_t hsz = le32(b + 14), bpp = hsz == 12 ? le16(b + 24) : le16(b + 28);
        if (hsz != 12 && (n < 34 || le32(b + 30) == 1 || le32(b + 30) == 2)) return 0; /* RLE */
        if (bpp != 1 && bpp != 4 && bpp != 8 && bpp != 16 && bpp != 24 && bpp != 32) return 0;
        uint64_t row = (w * bpp + 7) / 8, stride = (w * bpp + 31) / 32 * 4;
        return 14 + hsz + (h - 1) * stride + row;
    }
    case FMT_OTHER: { /* TGA, the only format stb_image reads without a magic number */
        if (n < 18) return 0;
        uint64_t pxb = (b[16] + 7u) / 8;
        uint64_t head = 18 + b[0] + (b[1] ? (uint64_t)le16(b + 5) * ((b[7] + 7u) / 8) : 0);
        if (b[2] & 8) return head + (px + 127) / 128 * (1 + pxb);
        return head + px * pxb;
    }
    case FMT_PNM: return pnm_header_bytes(b, n) + px * (uint64_t)channels * (is16 ? 2 : 1);
    case FMT_HDR: return w >= 8 && w < 32768 ? h * (4 + 8 * ((w + 126) / 127)) : px * 4;
    default: return 0; /* JPEG: jpeg_check; PNG and GIF: compressed, stb_image checks */
    }
}


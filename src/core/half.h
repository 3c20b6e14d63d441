/* fp16 / bf16 <-> fp32 conversions (bit-exact, round-to-nearest-even), used by loaders, writers and
 * the CPU backend. Header-only so the hot loops inline. */
#ifndef LOP_CORE_HALF_H
#define LOP_CORE_HALF_H
#include <stdint.h>
#include <string.h>

static inline float lop_bits_f32(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
static inline uint32_t lop_f32_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }

static inline float lop_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff;
    if (exp == 0) {
        if (man == 0) return lop_bits_f32(sign);
        /* subnormal: value = man * 2^-24 */
        float v = (float)man * (1.0f / 16777216.0f);
        return sign ? -v : v;
    }
    if (exp == 31) return lop_bits_f32(sign | 0x7f800000u | (man << 13));
    return lop_bits_f32(sign | ((exp + 112) << 23) | (man << 13));
}

static inline uint16_t lop_f32_to_f16(float f) {
    uint32_t x = lop_f32_bits(f);
    uint32_t sign = (x >> 16) & 0x8000;
    uint32_t ax = x & 0x7fffffffu;
    if (ax >= 0x7f800000u) return (uint16_t)(sign | 0x7c00 | (ax > 0x7f800000u ? 0x200 : 0));
    if (ax >= 0x477ff000u) return (uint16_t)(sign | 0x7c00); /* overflow -> inf */
    if (ax < 0x38800000u) {                                   /* subnormal or zero in f16 */
        float v = lop_bits_f32(ax) * 16777216.0f;             /* scale to units of 2^-24 */
        uint32_t m = (uint32_t)v;
        float rem = v - (float)m;
        if (rem > 0.5f || (rem == 0.5f && (m & 1))) m++;
        return (uint16_t)(sign | m);
    }
    uint32_t e = (ax >> 23) - 112, m = ax & 0x7fffff;
    uint32_t h = (e << 10) | (m >> 13);
    uint32_t rest = m & 0x1fff;
    if (rest > 0x1000 || (rest == 0x1000 && (h & 1))) h++;
    return (uint16_t)(sign | h);
}

static inline float lop_bf16_to_f32(uint16_t b) { return lop_bits_f32((uint32_t)b << 16); }

static inline uint16_t lop_f32_to_bf16(float f) {
    uint32_t x = lop_f32_bits(f);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40); /* quiet NaN */
    x += 0x7fff + ((x >> 16) & 1);
    return (uint16_t)(x >> 16);
}
#endif

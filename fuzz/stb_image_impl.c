/*
 * stb_image_impl.c - stb_image compiled from Debian's header into the test and fuzz programs
 * that link it (test_image, fuzz/), so AddressSanitizer, UBSan and libFuzzer's coverage see
 * inside the decoders. Its definitions take precedence over libstb.so's in those programs;
 * saccade itself uses libstb.so.
 */
#define STB_IMAGE_IMPLEMENTATION
#include <stb_image.h>

/*
 * fuzz_tflite.c - the TFLite flatbuffer reader (common/tflite.h) from memory: tflite_parse
 * validates every offset, vtable, vector, string, index and tensor size before use.
 * Size letters: none.
 */
#include "fuzz.h"
#include "tflite.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_quiet();
    tflite_is_tflite(data, size);
    tflite_free(tflite_parse("fuzz.tflite", data, size));
    return 0;
}

/* Version and feature queries, so that a binding can check what it loaded. */
#include "model/model.h"
#include "kernels/kernels.h"

#define FIB_STR2(x) #x
#define FIB_STR(x) FIB_STR2(x)

int32_t fib_version(void)
{
    return FIB_VERSION_NUMBER;
}

const char *fib_version_string(void)
{
    return FIB_STR(FIB_VERSION_MAJOR) "." FIB_STR(FIB_VERSION_MINOR) "." FIB_STR(
        FIB_VERSION_PATCH);
}

uint32_t fib_features(void)
{
    uint32_t features = 0;
#ifdef _OPENMP
    features |= FIB_FEATURE_OPENMP;
#endif
    int32_t level = fib_kernels_active()->level;
    if (level == FIB_SIMD_AVX2)
        features |= FIB_FEATURE_AVX2;
    if (level == FIB_SIMD_AVX512)
        features |= FIB_FEATURE_AVX512;
    return features;
}

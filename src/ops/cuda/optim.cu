// AdamW on the device (crate::optim). Every operation is rounded on its own, in the order of the host
// loop in `AdamW::step` (the __f*_rn intrinsics are never contracted into an FMA), so the moments and
// the update equal the host's bit for bit from the same gradient sums.

// One step of the moments, then the update u = step * m / (sqrt(v * inv_bc2) + eps), written over
// the gradient sum g (the caller subtracts u from the decayed parameter).
extern "C" __global__ void adamw_update(size_t n, float b1, float b2, float eps, float step, float inv_bc2,
                                        float *g, float *m, float *v) {
    size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (i >= n) return;
    float gi = g[i];
    float mi = __fadd_rn(__fmul_rn(b1, m[i]), __fmul_rn(__fsub_rn(1.0f, b1), gi));
    float vi = __fadd_rn(__fmul_rn(b2, v[i]), __fmul_rn(__fmul_rn(__fsub_rn(1.0f, b2), gi), gi));
    m[i] = mi;
    v[i] = vi;
    g[i] = __fdiv_rn(__fmul_rn(step, mi), __fadd_rn(__fsqrt_rn(__fmul_rn(vi, inv_bc2)), eps));
}

// flags[slot] = 1 when x has a NaN or an infinity (exponent bits all ones); flags start at 0.
extern "C" __global__ void nonfinite_flag(size_t n, const float *x, int *flags, size_t slot) {
    size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (i < n && (__float_as_uint(x[i]) & 0x7f800000u) == 0x7f800000u) flags[slot] = 1;
}

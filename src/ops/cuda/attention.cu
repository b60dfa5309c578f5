// Multi-head attention (src/ops/attention.rs): the products QK^T, PV and their gradients run as
// strided-batched cuBLAS GEMMs on the packed (rows, 3C) q;k;v buffer (ops/cuda/gpu.rs); these kernels
// are the row-wise parts on the probability buffer, laid out (heads, sequences, len, len), one score
// row of `len` per (head, sequence, query). One warp (32 threads) per row; f32.

// The sum (or max) of a value over the 32 lanes of a warp, in every lane.
__device__ float warp_sum(float v) {
    for (int o = 16; o > 0; o /= 2) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ float warp_max(float v) {
    for (int o = 16; o > 0; o /= 2) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// In place, for each row of already scaled scores: p <- softmax(p), and (when lse is not null)
// lse[row] = max + log(sum exp(p - max)), all the backward needs to rebuild the row.
extern "C" __global__ void attn_softmax(size_t rows, size_t len, float *p, float *lse) {
    size_t r = (blockIdx.x * (size_t)blockDim.x + threadIdx.x) / 32;
    unsigned lane = threadIdx.x % 32;
    if (r >= rows) return; // a whole warp leaves together (blocks are whole warps)
    float *row = p + r * len;
    float m = -__int_as_float(0x7f800000); // -inf (NVRTC has no math.h, so no INFINITY)
    for (size_t j = lane; j < len; j += 32) m = fmaxf(m, row[j]);
    m = warp_max(m);
    float z = 0.0f;
    for (size_t j = lane; j < len; j += 32) {
        float e = expf(row[j] - m);
        row[j] = e;
        z += e;
    }
    z = warp_sum(z);
    float inv = 1.0f / z;
    for (size_t j = lane; j < len; j += 32) row[j] *= inv;
    if (lse && lane == 0) lse[r] = m + logf(z);
}

// In place, scaled scores -> probabilities from saved log-sum-exps: p = exp(p - lse[row]).
extern "C" __global__ void attn_probs_from_lse(size_t tasks, size_t len, const float *lse, float *p) {
    size_t idx = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (idx >= tasks * len * len) return;
    p[idx] = expf(p[idx] - lse[idx / len]);
}

// In place, for each row: dp <- p * (dp - sum_j dp_j p_j) * scale (the gradient of the unscaled
// scores q.k from that of the probabilities).
extern "C" __global__ void attn_softmax_bwd(size_t rows, size_t len, float scale, const float *p, float *dp) {
    size_t r = (blockIdx.x * (size_t)blockDim.x + threadIdx.x) / 32;
    unsigned lane = threadIdx.x % 32;
    if (r >= rows) return;
    const float *pr = p + r * len;
    float *dr = dp + r * len;
    float dot = 0.0f;
    for (size_t j = lane; j < len; j += 32) dot += pr[j] * dr[j];
    dot = warp_sum(dot);
    for (size_t j = lane; j < len; j += 32) dr[j] = pr[j] * (dr[j] - dot) * scale;
}

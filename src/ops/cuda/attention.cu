// Multi-head attention (src/ops/attention.rs) on a packed (rows, 3C) q;k;v buffer, over the tokens of
// a frame (temporal = 0: sequence s is rows s*L .. s*L + L) or over the frames of a token position
// (temporal = 1: sequence s = b*L + l is rows (b*T + t)*L + l, t < T). Task = s*heads + h; the score
// and probability buffers are (tasks, len, len). One thread per output element; f32.

// The token row of element i of sequence s.
__device__ size_t seq_row(size_t s, size_t i, int temporal, size_t l, size_t frames) {
    if (temporal) return ((s / l) * frames + i) * l + (s % l);
    return s * l + i;
}

// p[task, i, j] = scale * q_i . k_j
extern "C" __global__ void attn_scores(size_t tasks, size_t len, size_t c, size_t heads, int temporal, size_t l,
                                       size_t frames, float scale, const float *qkv, float *p) {
    size_t idx = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (idx >= tasks * len * len) return;
    size_t j = idx % len, i = (idx / len) % len, task = idx / (len * len);
    size_t s = task / heads, h = task % heads, dh = c / heads;
    const float *q = qkv + seq_row(s, i, temporal, l, frames) * 3 * c + h * dh;
    const float *k = qkv + seq_row(s, j, temporal, l, frames) * 3 * c + c + h * dh;
    float acc = 0.0f;
    for (size_t d = 0; d < dh; d++) acc += q[d] * k[d];
    p[idx] = acc * scale;
}

// One thread per score row, in place: p <- softmax(p); lse[row] = max + log(sum exp(p - max)).
extern "C" __global__ void attn_softmax(size_t rows, size_t len, float *p, float *lse) {
    size_t r = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (r >= rows) return;
    float *row = p + r * len;
    float m = -__int_as_float(0x7f800000); // -inf (NVRTC has no math.h, so no INFINITY)
    for (size_t j = 0; j < len; j++) m = fmaxf(m, row[j]);
    float z = 0.0f;
    for (size_t j = 0; j < len; j++) {
        row[j] = expf(row[j] - m);
        z += row[j];
    }
    for (size_t j = 0; j < len; j++) row[j] /= z;
    if (lse) lse[r] = m + logf(z);
}

// out[row(s, i), h*dh + d] = sum_j p[task, i, j] * v_j[d]
extern "C" __global__ void attn_pv(size_t tasks, size_t len, size_t c, size_t heads, int temporal, size_t l,
                                   size_t frames, const float *p, const float *qkv, float *out) {
    size_t dh = c / heads;
    size_t idx = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (idx >= tasks * len * dh) return;
    size_t d = idx % dh, i = (idx / dh) % len, task = idx / (dh * len);
    size_t s = task / heads, h = task % heads;
    const float *pr = p + (task * len + i) * len;
    float acc = 0.0f;
    for (size_t j = 0; j < len; j++) acc += pr[j] * qkv[seq_row(s, j, temporal, l, frames) * 3 * c + 2 * c + h * dh + d];
    out[seq_row(s, i, temporal, l, frames) * c + h * dh + d] = acc;
}

// In place, scaled scores -> probabilities from saved log-sum-exps: p = exp(p - lse[row]).
extern "C" __global__ void attn_probs_from_lse(size_t tasks, size_t len, const float *lse, float *p) {
    size_t idx = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (idx >= tasks * len * len) return;
    p[idx] = expf(p[idx] - lse[idx / len]);
}

// dp[task, i, j] = dO_i . v_j
extern "C" __global__ void attn_dp(size_t tasks, size_t len, size_t c, size_t heads, int temporal, size_t l,
                                   size_t frames, const float *qkv, const float *go, float *dp) {
    size_t idx = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (idx >= tasks * len * len) return;
    size_t j = idx % len, i = (idx / len) % len, task = idx / (len * len);
    size_t s = task / heads, h = task % heads, dh = c / heads;
    const float *g = go + seq_row(s, i, temporal, l, frames) * c + h * dh;
    const float *v = qkv + seq_row(s, j, temporal, l, frames) * 3 * c + 2 * c + h * dh;
    float acc = 0.0f;
    for (size_t d = 0; d < dh; d++) acc += g[d] * v[d];
    dp[idx] = acc;
}

// One thread per row, in place: dp <- p * (dp - sum_j dp_j p_j) * scale (the gradient of the scores).
extern "C" __global__ void attn_softmax_bwd(size_t rows, size_t len, float scale, const float *p, float *dp) {
    size_t r = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (r >= rows) return;
    const float *pr = p + r * len;
    float *dr = dp + r * len;
    float dot = 0.0f;
    for (size_t j = 0; j < len; j++) dot += pr[j] * dr[j];
    for (size_t j = 0; j < len; j++) dr[j] = pr[j] * (dr[j] - dot) * scale;
}

// One thread per (task, position, d), adding to the packed gradient gqkv (rows, 3C):
// dq_i += sum_j ds[i, j] k_j;  dk_i += sum_j ds[j, i] q_j;  dv_i += sum_j p[j, i] dO_j.
extern "C" __global__ void attn_dqkv(size_t tasks, size_t len, size_t c, size_t heads, int temporal, size_t l,
                                     size_t frames, const float *qkv, const float *go, const float *p,
                                     const float *ds, float *gqkv) {
    size_t dh = c / heads;
    size_t idx = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (idx >= tasks * len * dh) return;
    size_t d = idx % dh, i = (idx / dh) % len, task = idx / (dh * len);
    size_t s = task / heads, h = task % heads;
    const float *pt = p + task * len * len;
    const float *st = ds + task * len * len;
    float dq = 0.0f, dk = 0.0f, dv = 0.0f;
    for (size_t j = 0; j < len; j++) {
        size_t rj = seq_row(s, j, temporal, l, frames);
        dq += st[i * len + j] * qkv[rj * 3 * c + c + h * dh + d];
        dk += st[j * len + i] * qkv[rj * 3 * c + h * dh + d];
        dv += pt[j * len + i] * go[rj * c + h * dh + d];
    }
    float *g = gqkv + seq_row(s, i, temporal, l, frames) * 3 * c + h * dh + d;
    g[0] += dq;
    g[c] += dk;
    g[2 * c] += dv;
}

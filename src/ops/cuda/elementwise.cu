// Elementwise ops of src/ops/elementwise.rs: residual add, weighted fusion, per-row masks (dropout,
// drop path, scaling), the mean over frames. One thread per output element; f32.
// Backward kernels accumulate (`+=`) into gradient buffers, as the CPU ops do.

// y[i] = a[i] + b[i]
extern "C" __global__ void add_fwd(size_t n, const float *a, const float *b, float *y) {
    size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (i < n) y[i] = a[i] + b[i];
}

// y[i] += alpha * x[i] (the gradient of an add is `axpy` with alpha 1; fusion uses its weights)
extern "C" __global__ void axpy(size_t n, float alpha, const float *x, float *y) {
    size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (i < n) y[i] += alpha * x[i];
}

// y[i] = x[i] * factors[i / block]
extern "C" __global__ void mask_fwd(size_t n, size_t block, const float *factors, const float *x, float *y) {
    size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (i < n) y[i] = x[i] * factors[i / block];
}

// gx[i] += gy[i] * factors[i / block]
extern "C" __global__ void mask_bwd(size_t n, size_t block, const float *factors, const float *gy, float *gx) {
    size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (i < n) gx[i] += gy[i] * factors[i / block];
}

// (B*T, C) -> (B, C): y[b, c] = (1/T) * sum_t x[b*T + t, c]
extern "C" __global__ void mean_frames_fwd(size_t videos, size_t frames, size_t c, const float *x, float *y) {
    size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (i >= videos * c) return;
    size_t b = i / c, ch = i % c;
    float acc = 0.0f;
    for (size_t t = 0; t < frames; t++) acc += x[(b * frames + t) * c + ch];
    y[i] = acc / (float)frames;
}

// gx[r, c] += gy[r / T, c] / T
extern "C" __global__ void mean_frames_bwd(size_t rows, size_t frames, size_t c, const float *gy, float *gx) {
    size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (i >= rows * c) return;
    size_t r = i / c, ch = i % c;
    gx[i] += gy[(r / frames) * c + ch] / (float)frames;
}

// out[k] += sum_i a[k*n + i] * b[i] for k < terms: the gradient of each fusion weight (one block
// per term, a tree sum in shared memory; blockDim.x must be 256).
extern "C" __global__ void dot_rows(size_t n, const float *a, const float *b, float *out) {
    __shared__ float part[256];
    size_t k = blockIdx.x;
    float acc = 0.0f;
    for (size_t i = threadIdx.x; i < n; i += blockDim.x) acc += a[k * n + i] * b[i];
    part[threadIdx.x] = acc;
    __syncthreads();
    for (unsigned s = blockDim.x / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) part[threadIdx.x] += part[threadIdx.x + s];
        __syncthreads();
    }
    if (threadIdx.x == 0) out[k] += part[0];
}

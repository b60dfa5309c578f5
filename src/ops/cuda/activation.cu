// Activations of src/ops/activation.rs. kind 0: CLIP's QuickGELU x*sigmoid(1.702x);
// kind 1: the exact GELU x*Phi(x) = x/2 * (1 + erf(x/sqrt 2)). One thread per element; f32.

__device__ float act_f(int kind, float x) {
    if (kind == 0) return x / (1.0f + expf(-1.702f * x));
    return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f));
}

__device__ float act_df(int kind, float x) {
    if (kind == 0) {
        float s = 1.0f / (1.0f + expf(-1.702f * x));
        return s + 1.702f * x * s * (1.0f - s);
    }
    float cdf = 0.5f * (1.0f + erff(x * 0.70710678118654752f));
    float pdf = expf(-0.5f * x * x) * 0.39894228040143268f; // 1/sqrt(2 pi)
    return cdf + x * pdf;
}

// y[i] = f(x[i])
extern "C" __global__ void act_fwd(size_t n, int kind, const float *x, float *y) {
    size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (i < n) y[i] = act_f(kind, x[i]);
}

// gx[i] += gy[i] * f'(x[i])
extern "C" __global__ void act_bwd(size_t n, int kind, const float *x, const float *gy, float *gx) {
    size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (i < n) gx[i] += gy[i] * act_df(kind, x[i]);
}

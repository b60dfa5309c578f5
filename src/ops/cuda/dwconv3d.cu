// Depthwise 3D convolution (src/ops/dwconv3d.rs) on tokens (B*T, H*W, C), row ((b*T + t)*H + h)*W + w:
// torch Conv3d(C, C, (kt, kh, kw), padding k/2, groups=C), a cross-correlation with zero padding.
// weight (C, kt*kh*kw), bias (C). One thread per output element; f32.

// y[b,t,h,w,c] = bias[c] + sum_tap weight[c, tap] * x[b, t+i-kt/2, h+j-kh/2, w+k-kw/2, c]
extern "C" __global__ void dwconv_fwd(size_t nb, size_t nt, size_t nh, size_t nw, size_t c, int kt, int kh, int kw,
                                      const float *x, const float *weight, const float *bias, float *y) {
    size_t idx = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    size_t n = nb * nt * nh * nw * c;
    if (idx >= n) return;
    size_t ch = idx % c;
    size_t pos = idx / c;
    long w = pos % nw, h = (pos / nw) % nh, t = (pos / (nw * nh)) % nt;
    size_t b = pos / (nw * nh * nt);
    float acc = bias[ch];
    int taps = kt * kh * kw;
    for (int i = 0; i < kt; i++) {
        long st = t + i - kt / 2;
        if (st < 0 || st >= (long)nt) continue;
        for (int j = 0; j < kh; j++) {
            long sh = h + j - kh / 2;
            if (sh < 0 || sh >= (long)nh) continue;
            for (int k = 0; k < kw; k++) {
                long sw = w + k - kw / 2;
                if (sw < 0 || sw >= (long)nw) continue;
                size_t row = ((b * nt + st) * nh + sh) * nw + sw;
                acc += weight[ch * taps + (i * kh + j) * kw + k] * x[row * c + ch];
            }
        }
    }
    y[idx] = acc;
}

// gx[b,s,c] += sum_tap weight[c, tap] * gy[output that reads source s through tap]
extern "C" __global__ void dwconv_bwd_x(size_t nb, size_t nt, size_t nh, size_t nw, size_t c, int kt, int kh, int kw,
                                        const float *weight, const float *gy, float *gx) {
    size_t idx = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    size_t n = nb * nt * nh * nw * c;
    if (idx >= n) return;
    size_t ch = idx % c;
    size_t pos = idx / c;
    long sw = pos % nw, sh = (pos / nw) % nh, st = (pos / (nw * nh)) % nt;
    size_t b = pos / (nw * nh * nt);
    float acc = 0.0f;
    int taps = kt * kh * kw;
    for (int i = 0; i < kt; i++) {
        long t = st + kt / 2 - i;
        if (t < 0 || t >= (long)nt) continue;
        for (int j = 0; j < kh; j++) {
            long h = sh + kh / 2 - j;
            if (h < 0 || h >= (long)nh) continue;
            for (int k = 0; k < kw; k++) {
                long w = sw + kw / 2 - k;
                if (w < 0 || w >= (long)nw) continue;
                size_t row = ((b * nt + t) * nh + h) * nw + w;
                acc += weight[ch * taps + (i * kh + j) * kw + k] * gy[row * c + ch];
            }
        }
    }
    gx[idx] += acc;
}

// One thread per (channel, tap): gw[c, tap] += sum over outputs gy * x(shifted); thread (c, taps)
// (one past the last tap) sums the bias gradient gb[c] += sum gy. gw or gb may be null.
extern "C" __global__ void dwconv_bwd_params(size_t nb, size_t nt, size_t nh, size_t nw, size_t c, int kt, int kh,
                                             int kw, const float *x, const float *gy, float *gw, float *gb) {
    size_t idx = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    int taps = kt * kh * kw;
    if (idx >= c * (size_t)(taps + 1)) return;
    size_t ch = idx / (taps + 1);
    int tap = idx % (taps + 1);
    size_t positions = nb * nt * nh * nw;
    float acc = 0.0f;
    if (tap == taps) {
        if (!gb) return;
        for (size_t p = 0; p < positions; p++) acc += gy[p * c + ch];
        gb[ch] += acc;
        return;
    }
    if (!gw) return;
    int i = tap / (kh * kw), j = (tap / kw) % kh, k = tap % kw;
    for (size_t p = 0; p < positions; p++) {
        long w = p % nw, h = (p / nw) % nh, t = (p / (nw * nh)) % nt;
        size_t b = p / (nw * nh * nt);
        long st = t + i - kt / 2, sh = h + j - kh / 2, sw = w + k - kw / 2;
        if (st < 0 || st >= (long)nt || sh < 0 || sh >= (long)nh || sw < 0 || sw >= (long)nw) continue;
        size_t row = ((b * nt + st) * nh + sh) * nw + sw;
        acc += gy[p * c + ch] * x[row * c + ch];
    }
    gw[ch * taps + tap] += acc;
}

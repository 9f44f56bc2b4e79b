/* The fast layers' compiled kernels: a small-batch matrix product and each family's fused gate
 * maths, float32, row-major contiguous buffers. Built by harness/impls/native.py with the
 * machine's C compiler (-O3 -march=native -fno-trapping-math -fno-math-errno -fopenmp-simd),
 * so the loops below are vectorised for the CPU they run on; loaded with ctypes.
 *
 * The gate kernels keep the representation the Python loop (cells.py) and its hand-written
 * backward use: an LSTM's cell state is carried as C = -2c and its g gate as sigmoid(2 g_pre)
 * (its tanh's computed by tanh_f all the same);
 * a GRU's saved gates are r, z and n. */

#include <stddef.h>

#define BLOCK 128  /* output columns accumulated at once, in registers: 8 AVX-512 vectors */

/* e^x, float32: Cody-Waite reduction by ln 2, a degree-6 polynomial, 2^k through the exponent
 * bits. Relative error ~1e-7 on [-87, 88]; inputs outside are clamped. Written branch-free so
 * that the compiler vectorises the loops that call it. */
static inline float exp_f(float x) {
  x = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
  float k = __builtin_floorf(x * 1.44269504088896341f + 0.5f);
  float r = x - k * 0.693359375f;
  r = r + k * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  union { int i; float f; } scale = {.i = ((int)k + 127) << 23};
  return p * scale.f;
}

static inline float sigmoid_f(float x) { return 1.0f / (1.0f + exp_f(-x)); }

/* tanh, float32, as Cephes' tanhf: an odd polynomial below |x| = 0.625, where a formula in
 * exp would lose the low bits of a small result, and 1 - 2e/(1 + e), e = e^-2|x|, above it; both
 * computed, one kept (branch-free). Accuracy matters more than it seems: with large weights a
 * recurrence amplifies an activation's error step by step (extremes::saturated_gates failed with
 * 1 - 2/(1 + e^2x) alone, 1.8e-7 from float64's tanh). */
static inline float tanh_f(float x) {
  float z = x * x;
  float p = -5.70498872745e-3f;
  p = p * z + 2.06390887954e-2f;
  p = p * z - 5.37397155531e-2f;
  p = p * z + 1.33314422036e-1f;
  p = p * z - 3.33332819422e-1f;
  float small = p * z * x + x;
  float e = exp_f(-2.0f * __builtin_fabsf(x));  /* in (0, 0.29]: 2e / (1 + e) keeps its bits */
  float large = 1.0f - 2.0f * e / (1.0f + e);
  return (x < 0.625f && x > -0.625f) ? small : (x < 0.0f ? -large : large);
}

/* acc[0:width] += x_row (k) @ wt[:, j0:j0+width], wt (k, n) row-major. */
static inline void accumulate(float *restrict acc, const float *restrict wt,
                              const float *restrict x_row, long k, long n, long j0, long width) {
  if (width == BLOCK) {  /* a constant trip count: the accumulators stay in registers */
    for (long i = 0; i < k; i++) {
      const float *restrict w = wt + i * n + j0;
      float xi = x_row[i];
      for (long j = 0; j < BLOCK; j++) acc[j] += w[j] * xi;
    }
  } else {
    for (long i = 0; i < k; i++) {
      const float *restrict w = wt + i * n + j0;
      float xi = x_row[i];
      for (long j = 0; j < width; j++) acc[j] += w[j] * xi;
    }
  }
}

/* y (rows, n) = add + x (rows, k) @ wt (k, n). add is (rows, n) with row stride add_stride
 * (0: one row for every row, a bias), or NULL; add may be y itself. Meant for a recurrent step
 * at one row or a few: W^T is streamed once per row, BLOCK columns at a time (for a second row
 * the block, k x BLOCK floats, is read again from cache). */
void sh_linear_add(const float *wt, const float *x, const float *add, long add_stride, float *y,
                   long rows, long k, long n) {
  float acc[BLOCK];
  for (long j0 = 0; j0 < n; j0 += BLOCK) {
    long width = n - j0 < BLOCK ? n - j0 : BLOCK;
    for (long r = 0; r < rows; r++) {
      for (long j = 0; j < width; j++) acc[j] = add ? add[r * add_stride + j0 + j] : 0.0f;
      accumulate(acc, wt, x + r * k, k, n, j0, width);
      for (long j = 0; j < width; j++) y[r * n + j0 + j] = acc[j];
    }
  }
}

/* y (rows, n) = add + x (rows, k) @ w^T, w (n, k) row-major: the weight as torch stores it, no
 * packing. Four outputs at a time, each a dot product of a row of w with x's row. add as for
 * sh_linear_add. */
void sh_dot_add(const float *w, const float *x, const float *add, long add_stride, float *y,
                long rows, long k, long n) {
  for (long r = 0; r < rows; r++) {
    const float *restrict xr = x + r * k;
    float out[4];
    for (long j = 0; j < n; j += 4) {
      long width = n - j < 4 ? n - j : 4;
      const float *restrict w0 = w + j * k;
      const float *restrict w1 = width > 1 ? w0 + k : w0, *restrict w2 = width > 2 ? w0 + 2 * k : w0;
      const float *restrict w3 = width > 3 ? w0 + 3 * k : w0;
      float a0 = 0.0f, a1 = 0.0f, a2 = 0.0f, a3 = 0.0f;
#pragma omp simd reduction(+ : a0, a1, a2, a3)
      for (long i = 0; i < k; i++) {
        float xi = xr[i];
        a0 += w0[i] * xi; a1 += w1[i] * xi; a2 += w2[i] * xi; a3 += w3[i] * xi;
      }
      out[0] = a0; out[1] = a1; out[2] = a2; out[3] = a3;
      for (long q = 0; q < width; q++)
        y[r * n + j + q] = (add ? add[r * add_stride + j + q] : 0.0f) + out[q];
    }
  }
}

/* One LSTM step's gate maths. gates (b, 4h): the pre-activations [i, f, g, o] in, [sigmoid(i),
 * sigmoid(f), sigmoid(2g), sigmoid(o)] out (the backward's representation). c_prev, c_out (b, h):
 * C = -2c before and after. h_out (b, h): o tanh(c'). Both tanh's are tanh_f, precise near 0
 * (1 - 2 sigmoid(2x) there keeps only the absolute precision of 1, not the value's):
 * C' = f C - 2 i tanh(g) (= -2 (f c + i g)), h' = o tanh(-C'/2); sigmoid(2g) = (1 + tanh g) / 2. */
void sh_lstm_cell(float *gates, const float *c_prev, float *c_out, float *h_out, long b,
                  long h) {
  for (long row = 0; row < b; row++) {
    float *restrict gi = gates + row * 4 * h, *restrict gf = gi + h;
    float *restrict gg = gf + h, *restrict go = gg + h;
    const float *restrict cp = c_prev + row * h;
    float *restrict cn = c_out + row * h, *restrict hn = h_out + row * h;
#pragma omp simd
    for (long j = 0; j < h; j++) {
      float i = sigmoid_f(gi[j]), f = sigmoid_f(gf[j]);
      float t_g = tanh_f(gg[j]), o = sigmoid_f(go[j]);
      float c = f * cp[j] - 2.0f * i * t_g;
      gi[j] = i; gf[j] = f; gg[j] = 0.5f + 0.5f * t_g; go[j] = o;
      cn[j] = c;
      hn[j] = o * tanh_f(-0.5f * c);
    }
  }
}

/* One LSTM step backward, unmasked and unprojected: from what sh_lstm_cell left (gates in
 * sigmoid form, C = -2c before and after the step) and the gradients reaching its outputs
 * (d_out + d_h into h', d_c into c'), the gradient of the pre-activations dz (b, 4h) and, in
 * place, d_c for the step before (the gradient into h is dz @ W_hh, a product left to the
 * caller). tanh(c') = 1 - 2 s_c with s_c = sigmoid(C'); tanh' = 4 s (1 - s) for g and c'. */
void sh_lstm_cell_backward(const float *gates, const float *c_prev, const float *c_now,
                           const float *d_out, const float *d_h, float *d_c, float *dz, long b,
                           long h) {
  for (long row = 0; row < b; row++) {
    const float *restrict gi = gates + row * 4 * h, *restrict gf = gi + h;
    const float *restrict gg = gf + h, *restrict go = gg + h;
    const float *restrict cp = c_prev + row * h, *restrict cn = c_now + row * h;
    const float *restrict dout = d_out + row * h, *restrict dh = d_h + row * h;
    float *restrict dc = d_c + row * h;
    float *restrict zi = dz + row * 4 * h, *restrict zf = zi + h, *restrict zg = zf + h;
    float *restrict zo = zg + h;
#pragma omp simd
    for (long j = 0; j < h; j++) {
      float i = gi[j], f = gf[j], s_g = gg[j], o = go[j];
      float s_c = sigmoid_f(cn[j]);
      float grad_h = dout[j] + dh[j];
      float grad_c = dc[j] + 4.0f * grad_h * o * (s_c - s_c * s_c);  /* dL/dc' */
      zi[j] = grad_c * (2.0f * s_g - 1.0f) * (i - i * i);
      zf[j] = -0.5f * grad_c * cp[j] * (f - f * f);  /* c = -C/2 */
      zg[j] = 4.0f * grad_c * i * (s_g - s_g * s_g);
      zo[j] = grad_h * (1.0f - 2.0f * s_c) * (o - o * o);
      dc[j] = grad_c * f;
    }
  }
}

/* Consecutive LSTM steps with the product sh_dot_add runs, no mask and no projection: the
 * whole Python loop of cells.LSTMRun in one call. Step t = t0, t0 + dir, ... (steps of them,
 * dir = -1 when reverse): gates = xw[t - low] (b, 4h) += h_prev @ w^T, w (4h, h), then
 * sh_lstm_cell. h_buf (h_rows, b, h) and c_buf (c_rows, b, h) are indexed by slot modulo their
 * rows: step t reads slot t + reverse and writes slot t + 1 - reverse (loop.Run's slots). */
void sh_lstm_steps(const float *w, float *xw, long low, float *h_buf, long h_rows, float *c_buf,
                   long c_rows, long t0, long steps, int reverse, long b, long h) {
  long dir = reverse ? -1 : 1, state = b * h;
  for (long s = 0; s < steps; s++) {
    long t = t0 + s * dir, prev = t + reverse, next = t + 1 - reverse;
    float *gates = xw + (t - low) * b * 4 * h;
    sh_dot_add(w, h_buf + (prev % h_rows) * state, gates, 4 * h, gates, b, h, 4 * h);
    sh_lstm_cell(gates, c_buf + (prev % c_rows) * state, c_buf + (next % c_rows) * state,
                 h_buf + (next % h_rows) * state, b, h);
  }
}

/* One GRU step's gate maths. gx (b, 3h): the input projection [r, z, n] in (biases b_ih
 * included), [r, z, n] out; hg (b, 3h): h W_hh^T + b_hh. r, z = sigmoid(gx + hg),
 * n = tanh(gx_n + r hg_n), h' = n + z (h - n). */
void sh_gru_cell(float *gx, const float *hg, const float *h_prev, float *h_out, long b,
                 long h) {
  for (long row = 0; row < b; row++) {
    float *restrict xr = gx + row * 3 * h, *restrict xz = xr + h, *restrict xn = xz + h;
    const float *restrict hr = hg + row * 3 * h, *restrict hz = hr + h, *restrict hn = hz + h;
    const float *restrict hp = h_prev + row * h;
    float *restrict out = h_out + row * h;
#pragma omp simd
    for (long j = 0; j < h; j++) {
      float r = sigmoid_f(xr[j] + hr[j]), z = sigmoid_f(xz[j] + hz[j]);
      float n = tanh_f(xn[j] + r * hn[j]);
      xr[j] = r; xz[j] = z; xn[j] = n;
      out[j] = n + z * (hp[j] - n);
    }
  }
}

/* An Elman step's activation: out = tanh(pre) (relu == 0) or max(pre, 0), n elements. */
void sh_rnn_act(const float *pre, float *out, long n, int relu) {
  if (relu) {
    for (long j = 0; j < n; j++) out[j] = pre[j] < 0.0f ? 0.0f : pre[j];  /* NaN stays NaN */
  } else {
    for (long j = 0; j < n; j++) out[j] = tanh_f(pre[j]);
  }
}

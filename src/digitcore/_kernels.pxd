# cython: language_level=3
# Declarations of csrc/digitcore.h for Cython. Keep in the same order as the header.
from libc.stdint cimport int32_t, int64_t, uint64_t, uint8_t

cdef extern from "digitcore.h" nogil:
    enum:
        DC_OK
        DC_ERR_NOMEM
        DC_ERR_ARG
        DC_ERR_LABEL
        DC_ERR_UNSUPPORTED
        DC_ERR_NONFINITE
        DC_ERR_CAPACITY
        DC_ERR_CHANGED
    enum:
        DC_KERNEL_GENERIC
        DC_KERNEL_AVX2

    int dc_cpu_has_avx2()
    int dc_kernel_path()
    int dc_select_kernel(int path)
    int dc_cpu_has_avx512()
    int dc_use_avx512(int on)
    int dc_avx512_active()
    enum: DC_MAX_THREADS
    void dc_set_num_threads(int n)
    int dc_get_num_threads()
    int dc_team_started()
    int dc_have_openmp()
    enum: DC_TEAM_FIXED, DC_TEAM_ADAPTIVE, DC_TEAM_ALTERNATE
    int dc_set_team_policy(int policy)
    int dc_get_team_policy()
    void dc_team_counts(int64_t *out)
    int dc_team_simulate(uint8_t *single, const double *secs_per_row, int64_t calls,
                         int64_t batches, int64_t rows, double pause)

    int dc_sgemm(int trans_a, int trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                 const float *a, int64_t lda, const float *b, int64_t ldb, float beta,
                 float *c, int64_t ldc)
    int dc_sgemm_ref(int trans_a, int trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                     const float *a, int64_t lda, const float *b, int64_t ldb, float beta,
                     float *c, int64_t ldc)

    enum:
        DC_ACT_IDENTITY
        DC_ACT_RELU
        DC_ACT_LEAKY_RELU
        DC_ACT_SIGMOID
        DC_ACT_TANH
    int dc_activation_forward(float *out, const float *inp, int64_t n, int act, float alpha)
    int dc_activation_backward(float *dinp, const float *dout, const float *out, int64_t n,
                               int act, float alpha)
    int dc_dense_forward(float *out, const float *inp, const float *weight, const float *bias,
                         int64_t B, int64_t n_in, int64_t n_out, int act, float alpha)
    int dc_dense_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                          const float *inp, const float *weight, int64_t B, int64_t n_in,
                          int64_t n_out, int accumulate)
    int dc_softmax_forward(float *probs, const float *logits, int64_t B, int64_t C)
    int dc_softmax_exp(double *y, const double *d, int64_t n)
    int dc_softmax_xent(float *probs, float *dlogits, double *loss, int64_t *n_correct,
                        const float *logits, const int64_t *labels, int64_t B, int64_t C,
                        float label_smoothing)
    int dc_sigmoid_bce(float *probs, float *dlogits, double *loss, int64_t *n_correct,
                       const float *logits, const float *targets, int64_t B, int64_t C)
    int dc_gather_u8(float *out, const uint8_t *inp, const int64_t *idx, int64_t B, int64_t F,
                     float scale, float shift)
    int dc_gather_f32(float *out, const float *inp, const int64_t *idx, int64_t B, int64_t F,
                      float scale, float shift)
    int dc_sgd_update(float *param, float *velocity, const float *grad, int64_t n, float lr,
                      float momentum, int nesterov, float l2, float l1)
    int dc_rmsprop_update(float *param, float *sq_avg, const float *grad, int64_t n, float lr,
                          float rho, float eps, float l2, float l1)
    int dc_adam_update(float *param, float *m, float *v, const float *grad, int64_t n,
                       float lr, float beta1, float beta2, float eps, float l2, float l1,
                       float wd, int64_t step)
    int dc_sum_squares(double *out, const float *x, int64_t n)
    int dc_scale(float *x, int64_t n, float s)
    uint64_t dc_hash64(uint64_t seed, uint64_t stream, uint64_t i)
    int dc_dropout_forward(float *out, uint8_t *mask, const float *inp, int64_t n, float p,
                           uint64_t seed, uint64_t stream)
    int dc_dropout_backward(float *dinp, const float *dout, const uint8_t *mask, int64_t n,
                            float p)

    ctypedef struct dc_augment:
        float rotate
        float shear
        float scale
        float translate
        float alpha
        float thickness
        float faint
        const float *bank
        int64_t bank_size
        int64_t height
        int64_t width
    enum:
        DC_AUG_DRAWS
        DC_AUG_MAX_SIDE
    int dc_elastic_bank(float *bank, int64_t size, float sigma, uint64_t seed, uint64_t stream)
    int dc_augment_u8(uint8_t *out, const uint8_t *inp, const int64_t *idx, int64_t B,
                      const dc_augment *aug, uint64_t seed, uint64_t stream)
    int dc_augment_f32(float *out, const float *inp, const int64_t *idx, int64_t B,
                       const dc_augment *aug, uint64_t seed, uint64_t stream)

    ctypedef struct dc_mlp:
        int64_t n_layers
        const int64_t *sizes
        float *params
        int act
        float act_alpha
        float dropout
        int sparse_input
        int64_t sparse_split
        const float *sparse_offset
    enum:
        DC_SPARSE_AUTO
        DC_SPARSE_NEVER
        DC_SPARSE_ALWAYS
    enum:
        DC_OPT_SGD
        DC_OPT_RMSPROP
        DC_OPT_ADAM
    ctypedef struct dc_optim:
        int kind
        float momentum
        int nesterov
        float rho
        float beta1
        float beta2
        float eps
        float l2
        float l1
        float weight_decay
        float clip_norm
        int64_t step
        float *grad_avg
        float *sq_avg
    ctypedef struct dc_train_stats:
        double loss_sum
        int64_t n_correct
        int64_t n_seen
        int64_t failed_batch

    int64_t dc_mlp_n_params(int64_t n_layers, const int64_t *sizes)
    ctypedef struct dc_mlp_keep:
        pass
    int dc_mlp_train(dc_train_stats *stats, const dc_mlp *net, dc_optim *opt, float *grads,
                     const uint8_t *x_u8, const float *x_f32, const int64_t *labels,
                     const int64_t *order, int64_t n_order, int64_t batch_size,
                     const float *lrs, float scale, float shift, uint64_t seed,
                     const dc_augment *aug, int64_t n_x, dc_mlp_keep *keep)
    dc_mlp_keep *dc_mlp_keep_new()
    void dc_mlp_keep_clear(dc_mlp_keep *keep)
    void dc_mlp_keep_free(dc_mlp_keep *keep)
    int64_t dc_mlp_keep_nnz(const dc_mlp_keep *keep)
    int dc_mlp_forward(float *out, const dc_mlp *net, const uint8_t *x_u8, const float *x_f32,
                       int64_t n, float scale, float shift, int softmax)
    int dc_mlp_evaluate(double *loss, int64_t *n_correct, const dc_mlp *net,
                        const uint8_t *x_u8, const float *x_f32, const int64_t *labels,
                        int64_t n, float scale, float shift)

    ctypedef struct dc_rows:
        const uint8_t *u8
        const float *f32
        const int64_t *ptr
        const int32_t *idx
        const float *val
        int64_t rows
        int64_t cols
        float scale
        float shift
    enum:
        DC_LOSS_SOFTMAX_XENT
        DC_LOSS_SIGMOID_BCE
    int dc_mlp_loss_grad(double *loss, int64_t *n_correct, float *grads, const dc_mlp *net,
                         int loss_kind, const dc_rows *x, const int64_t *sel, int64_t n,
                         const int64_t *labels, const float *targets)
    int dc_mlp_logits_rows(float *out, const dc_mlp *net, const dc_rows *x,
                           const int64_t *sel, int64_t n)

/*
 * d2v_native: the native kernels behind data2vec-ts's native engine (src/engine/native/).
 *
 * jax-js keeps every array in one shared WebAssembly memory. The engine recognizes jax-js kernels and calls
 * this addon on that memory, in place:
 * - `gemm`: matmul kernels, with a plan giving the operands' element offsets and how each is laid out.
 *   Operands OpenBLAS can read in place (a strided matrix with one unit stride) are passed as they are;
 *   others are packed first, from strides or from an index table. The output is written contiguous.
 * - `loadKernel` / `runKernel`: elementwise kernels compiled to C by the engine (src/engine/native/
 *   kernel-c.ts) and built by the system's C compiler into shared objects, loaded here with dlopen.
 *
 * Nothing here allocates in the wasm memory or keeps pointers into it between calls. Every address is
 * checked against the memory's length before any is read or written.
 */
#include <node_api.h>
#include <cblas.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <dlfcn.h>
#include <pthread.h>

/* Bumped whenever the plan layout or the exported functions change; the engine refuses a different one. */
#define D2V_NATIVE_ABI 4

/* Declared by OpenBLAS (openblas_config.h / cblas.h); repeated so that a reference-BLAS cblas.h also builds. */
extern void openblas_set_num_threads(int num_threads);
extern int openblas_get_num_threads(void);
extern int openblas_get_parallel(void);
extern char* openblas_get_config(void);
extern char* openblas_get_corename(void);

/* Plan layout (Int32Array). Operand modes: DIRECT = strided, read in place by BLAS (trans, ld);
 * STRIDED = packed from (row stride, column stride); TABLE = packed from an index table (INT32_MIN = zero). */
enum { P_M, P_N, P_K, P_BATCH, P_A_MODE, P_A_TRANS, P_A_S0, P_A_S1, P_B_MODE, P_B_TRANS, P_B_S0, P_B_S1,
       P_G_MODE, P_G_S0, P_G_S1, P_LEN };
enum { MODE_NONE = 0, MODE_DIRECT = 1, MODE_STRIDED = 2, MODE_TABLE = 3 };
#define MASKED INT32_MIN

typedef struct {
  const int32_t* data;
  size_t len;
} Table;

static float* scratch[3];
static size_t scratch_len[3];

static float* scratch_for(int which, size_t n) {
  if (scratch_len[which] < n) {
    float* p = (float*)realloc(scratch[which], n * sizeof(float));
    if (!p) return NULL;
    scratch[which] = p;
    scratch_len[which] = n;
  }
  return scratch[which];
}

static bool get_f32(napi_env env, napi_value v, float** data, size_t* len) {
  napi_typedarray_type t;
  void* p;
  if (napi_get_typedarray_info(env, v, &t, len, &p, NULL, NULL) != napi_ok || t != napi_float32_array) return false;
  *data = (float*)p;
  return true;
}

static bool get_i32(napi_env env, napi_value v, const int32_t** data, size_t* len) {
  napi_typedarray_type t;
  void* p;
  if (napi_get_typedarray_info(env, v, &t, len, &p, NULL, NULL) != napi_ok || t != napi_int32_array) return false;
  *data = (const int32_t*)p;
  return true;
}

static bool get_table(napi_env env, napi_value v, Table* table) {
  napi_valuetype type;
  table->data = NULL;
  table->len = 0;
  if (napi_typeof(env, v, &type) != napi_ok) return false;
  if (type == napi_undefined || type == napi_null) return true;
  return get_i32(env, v, &table->data, &table->len);
}

/* The largest and smallest offset of a rows × cols matrix with strides (s0, s1), relative to its origin. */
static bool strided_in_bounds(int64_t origin, int64_t rows, int64_t cols, int64_t s0, int64_t s1, size_t mem_len) {
  int64_t lo = origin, hi = origin;
  int64_t d0 = (rows - 1) * s0, d1 = (cols - 1) * s1;
  if (d0 < 0) lo += d0; else hi += d0;
  if (d1 < 0) lo += d1; else hi += d1;
  return lo >= 0 && hi < (int64_t)mem_len;
}

/* Copies a rows × cols matrix into dst (row-major, contiguous). Returns false on an out-of-bounds address. */
static bool pack(const float* mem, size_t mem_len, int mode, int64_t origin, int64_t rows, int64_t cols, int64_t s0,
                 int64_t s1, const Table* table, int64_t table_start, float* dst) {
  if (mode == MODE_STRIDED) {
    if (!strided_in_bounds(origin, rows, cols, s0, s1, mem_len)) return false;
    for (int64_t r = 0; r < rows; r++) {
      const float* src = mem + origin + r * s0;
      float* out = dst + r * cols;
      if (s1 == 1) memcpy(out, src, (size_t)cols * sizeof(float));
      else if (s1 == 0) for (int64_t c = 0; c < cols; c++) out[c] = src[0];
      else for (int64_t c = 0; c < cols; c++) out[c] = src[c * s1];
    }
    return true;
  }
  /* MODE_TABLE */
  int64_t n = rows * cols;
  if (table_start < 0 || table_start + n > (int64_t)table->len) return false;
  const int32_t* idx = table->data + table_start;
  for (int64_t i = 0; i < n; i++) {
    if (idx[i] == MASKED) { dst[i] = 0.0f; continue; }
    int64_t a = origin + idx[i];
    if (a < 0 || a >= (int64_t)mem_len) return false;
    dst[i] = mem[a];
  }
  return true;
}

/*
 * gemm(mem, plan, rel, bases, alpha, tableA, tableB, tableG)
 *   mem:   Float32Array over the whole wasm memory
 *   plan:  Int32Array, layout P_*
 *   rel:   Int32Array of 4 per batch entry: offsets of A, B, C, G for that entry (relative to the bases;
 *          for a TABLE operand, the entry's first index into its table)
 *   bases: Float64Array [A, B, C, G], element offsets of the operands' buffers in mem
 * For each batch entry: C[M×N] = alpha · A[M×K] · B[K×N] (+ G when plan[P_G_MODE] != NONE).
 */
static napi_value Gemm(napi_env env, napi_callback_info info) {
  size_t argc = 8;
  napi_value argv[8];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  float* mem;
  size_t mem_len, plan_len, rel_len;
  const int32_t *plan, *rel;
  double alpha;
  Table tables[3];
  const double* bases = NULL;
  size_t bases_len = 0;
  if (argc < 8 || !get_f32(env, argv[0], &mem, &mem_len) || !get_i32(env, argv[1], &plan, &plan_len) ||
      plan_len < P_LEN || !get_i32(env, argv[2], &rel, &rel_len) ||
      napi_get_value_double(env, argv[4], &alpha) != napi_ok || !get_table(env, argv[5], &tables[0]) ||
      !get_table(env, argv[6], &tables[1]) || !get_table(env, argv[7], &tables[2])) {
    napi_throw_type_error(env, "D2V_NATIVE_ARGS", "d2v_native.gemm: bad arguments");
    return NULL;
  }
  {
    napi_typedarray_type t;
    void* p;
    if (napi_get_typedarray_info(env, argv[3], &t, &bases_len, &p, NULL, NULL) != napi_ok || t != napi_float64_array ||
        bases_len < 4) {
      napi_throw_type_error(env, "D2V_NATIVE_ARGS", "d2v_native.gemm: bases must be a Float64Array of 4");
      return NULL;
    }
    bases = (const double*)p;
  }
  const int64_t M = plan[P_M], N = plan[P_N], K = plan[P_K], batch = plan[P_BATCH];
  const int modeA = plan[P_A_MODE], modeB = plan[P_B_MODE], modeG = plan[P_G_MODE];
  if (M < 1 || N < 1 || K < 1 || batch < 1 || (size_t)(4 * batch) > rel_len) {
    napi_throw_range_error(env, "D2V_NATIVE_PLAN", "d2v_native.gemm: bad plan sizes");
    return NULL;
  }
  float* packA = modeA == MODE_DIRECT ? NULL : scratch_for(0, (size_t)(M * K));
  float* packB = modeB == MODE_DIRECT ? NULL : scratch_for(1, (size_t)(K * N));
  if ((modeA != MODE_DIRECT && !packA) || (modeB != MODE_DIRECT && !packB)) {
    napi_throw_error(env, "D2V_NATIVE_OOM", "d2v_native.gemm: out of memory for packing");
    return NULL;
  }
  const int64_t baseA = (int64_t)bases[0], baseB = (int64_t)bases[1], baseC = (int64_t)bases[2], baseG = (int64_t)bases[3];
  for (int64_t i = 0; i < batch; i++) {
    const int64_t oA = baseA + rel[4 * i], oB = baseB + rel[4 * i + 1], oC = baseC + rel[4 * i + 2];
    const float *a, *b;
    bool ta = false, tb = false;
    int64_t lda = K, ldb = N;
    if (modeA == MODE_DIRECT) {
      ta = plan[P_A_TRANS] != 0;
      lda = plan[P_A_S0];
      if (!(ta ? strided_in_bounds(oA, K, M, lda, 1, mem_len) : strided_in_bounds(oA, M, K, lda, 1, mem_len))) goto oob;
      a = mem + oA;
    } else {
      if (modeA == MODE_TABLE ? !pack(mem, mem_len, modeA, baseA, M, K, 0, 0, &tables[0], rel[4 * i], packA)
                              : !pack(mem, mem_len, modeA, oA, M, K, plan[P_A_S0], plan[P_A_S1], NULL, 0, packA))
        goto oob;
      a = packA;
    }
    if (modeB == MODE_DIRECT) {
      tb = plan[P_B_TRANS] != 0;
      ldb = plan[P_B_S0];
      if (!(tb ? strided_in_bounds(oB, N, K, ldb, 1, mem_len) : strided_in_bounds(oB, K, N, ldb, 1, mem_len))) goto oob;
      b = mem + oB;
    } else {
      if (modeB == MODE_TABLE ? !pack(mem, mem_len, modeB, baseB, K, N, 0, 0, &tables[1], rel[4 * i + 1], packB)
                              : !pack(mem, mem_len, modeB, oB, K, N, plan[P_B_S0], plan[P_B_S1], NULL, 0, packB))
        goto oob;
      b = packB;
    }
    if (!strided_in_bounds(oC, M, N, N, 1, mem_len)) goto oob;
    float* c = mem + oC;
    float beta = 0.0f;
    if (modeG != MODE_NONE) {
      /* The epilogue's addend (a bias, an attention mask) is written into C first; BLAS adds the product. */
      if (modeG == MODE_TABLE ? !pack(mem, mem_len, modeG, baseG, M, N, 0, 0, &tables[2], rel[4 * i + 3], c)
                              : !pack(mem, mem_len, modeG, baseG + rel[4 * i + 3], M, N, plan[P_G_S0], plan[P_G_S1], NULL, 0, c))
        goto oob;
      beta = 1.0f;
    }
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, (int)M, (int)N, (int)K,
                (float)alpha, a, (int)lda, b, (int)ldb, beta, c, (int)N);
  }
  return NULL;
oob:
  napi_throw_range_error(env, "D2V_NATIVE_BOUNDS", "d2v_native.gemm: an operand lies outside the memory");
  return NULL;
}


/*
 * Compiled elementwise kernels: void d2v_kernel(mem, bases, out_base, lo, hi) writes the outputs of
 * iterations [lo, hi) of its outermost loop. Large kernels are split between the calling thread and helper
 * threads (one fewer than the cores): the iterations are independent and every element is written once.
 */
typedef void (*KernelFn)(uint8_t* mem, const int64_t* bases, int64_t out_base, int32_t lo, int32_t hi);
static KernelFn* kernels;
static int nkernels, kernels_cap;

#define MAX_HELPERS 15
typedef struct {
  pthread_t thread;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int state; /* 0 idle, 1 work posted, 2 done */
  KernelFn fn;
  uint8_t* mem;
  const int64_t* bases;
  int64_t out_base;
  int32_t lo, hi;
} Helper;
static Helper helpers[MAX_HELPERS];
static int nhelpers; /* started */

static void* helper_main(void* arg) {
  Helper* h = (Helper*)arg;
  pthread_mutex_lock(&h->mu);
  for (;;) {
    while (h->state != 1) pthread_cond_wait(&h->cv, &h->mu);
    pthread_mutex_unlock(&h->mu);
    h->fn(h->mem, h->bases, h->out_base, h->lo, h->hi);
    pthread_mutex_lock(&h->mu);
    h->state = 2;
    pthread_cond_broadcast(&h->cv);
  }
  return NULL;
}

/* Starts helpers up to `want`; returns how many run. */
static int ensure_helpers(int want) {
  if (want > MAX_HELPERS) want = MAX_HELPERS;
  while (nhelpers < want) {
    Helper* h = &helpers[nhelpers];
    pthread_mutex_init(&h->mu, NULL);
    pthread_cond_init(&h->cv, NULL);
    h->state = 0;
    if (pthread_create(&h->thread, NULL, helper_main, h) != 0) break;
    pthread_detach(h->thread);
    nhelpers++;
  }
  return nhelpers < want ? nhelpers : want;
}

static void run_split(KernelFn fn, uint8_t* mem, const int64_t* bases, int64_t out_base, int32_t outer, int parts) {
  int helpers_used = parts > 1 ? ensure_helpers(parts - 1) : 0;
  parts = helpers_used + 1;
  for (int i = 0; i < helpers_used; i++) {
    Helper* h = &helpers[i];
    pthread_mutex_lock(&h->mu);
    h->fn = fn, h->mem = mem, h->bases = bases, h->out_base = out_base;
    h->lo = (int32_t)((int64_t)outer * (i + 1) / parts);
    h->hi = (int32_t)((int64_t)outer * (i + 2) / parts);
    h->state = 1;
    pthread_cond_broadcast(&h->cv);
    pthread_mutex_unlock(&h->mu);
  }
  fn(mem, bases, out_base, 0, (int32_t)((int64_t)outer / parts));
  for (int i = 0; i < helpers_used; i++) {
    Helper* h = &helpers[i];
    pthread_mutex_lock(&h->mu);
    while (h->state != 2) pthread_cond_wait(&h->cv, &h->mu);
    h->state = 0;
    pthread_mutex_unlock(&h->mu);
  }
}

/* loadKernel(path): the index of d2v_kernel in the shared object at path; throws with dlerror()'s text. */
static napi_value LoadKernel(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  char path[4096];
  size_t len;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 1 || napi_get_value_string_utf8(env, argv[0], path, sizeof path, &len) != napi_ok || len >= sizeof path - 1) {
    napi_throw_type_error(env, "D2V_NATIVE_ARGS", "d2v_native.loadKernel: expected a path");
    return NULL;
  }
  void* handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  KernelFn fn = handle ? (KernelFn)dlsym(handle, "d2v_kernel") : NULL;
  if (!fn) {
    const char* err = dlerror();
    if (handle) dlclose(handle);
    napi_throw_error(env, "D2V_NATIVE_DLOPEN", err ? err : "d2v_kernel not found");
    return NULL;
  }
  if (nkernels == kernels_cap) {
    int cap = kernels_cap ? 2 * kernels_cap : 64;
    KernelFn* p = (KernelFn*)realloc(kernels, (size_t)cap * sizeof(KernelFn));
    if (!p) {
      napi_throw_error(env, "D2V_NATIVE_OOM", "d2v_native.loadKernel: out of memory");
      return NULL;
    }
    kernels = p;
    kernels_cap = cap;
  }
  kernels[nkernels] = fn;
  napi_value id;
  napi_create_int32(env, nkernels++, &id);
  return id;
}

/*
 * runKernel(id, mem, bases, needs, outBase, outBytes, outer, parts)
 *   bases: Float64Array, byte offset of each input buffer in mem; needs: bytes each input must hold (its data
 *   range, which the kernel's loads never leave); the output's outBytes at outBase must lie in mem too.
 *   outer: iterations of the kernel's outermost loop, run in `parts` pieces on as many threads.
 */
static napi_value RunKernel(napi_env env, napi_callback_info info) {
  size_t argc = 8;
  napi_value argv[8];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int32_t id, outer, parts;
  float* memf;
  size_t mem_len, nbases, nneeds;
  double out_base_d, out_bytes_d;
  napi_typedarray_type t1, t2;
  void *pb, *pn;
  if (argc < 8 || napi_get_value_int32(env, argv[0], &id) != napi_ok || id < 0 || id >= nkernels ||
      !get_f32(env, argv[1], &memf, &mem_len) ||
      napi_get_typedarray_info(env, argv[2], &t1, &nbases, &pb, NULL, NULL) != napi_ok || t1 != napi_float64_array ||
      napi_get_typedarray_info(env, argv[3], &t2, &nneeds, &pn, NULL, NULL) != napi_ok || t2 != napi_float64_array ||
      nneeds != nbases || nbases > 64 || napi_get_value_double(env, argv[4], &out_base_d) != napi_ok ||
      napi_get_value_double(env, argv[5], &out_bytes_d) != napi_ok || napi_get_value_int32(env, argv[6], &outer) != napi_ok ||
      napi_get_value_int32(env, argv[7], &parts) != napi_ok || outer < 0 || parts < 1) {
    napi_throw_type_error(env, "D2V_NATIVE_ARGS", "d2v_native.runKernel: bad arguments");
    return NULL;
  }
  const double *bd = (const double*)pb, *nd = (const double*)pn;
  const int64_t bytes = (int64_t)mem_len * 4;
  int64_t bases[64];
  for (size_t i = 0; i < nbases; i++) {
    bases[i] = (int64_t)bd[i];
    if (bases[i] < 0 || bases[i] + (int64_t)nd[i] > bytes) goto oob;
  }
  if (out_base_d < 0 || (int64_t)out_base_d + (int64_t)out_bytes_d > bytes) goto oob;
  if (parts > outer) parts = outer > 0 ? outer : 1;
  run_split(kernels[id], (uint8_t*)memf, bases, (int64_t)out_base_d, outer, parts);
  return NULL;
oob:
  napi_throw_range_error(env, "D2V_NATIVE_BOUNDS", "d2v_native.runKernel: an operand lies outside the memory");
  return NULL;
}

/* sgemm(a, b, c, M, N, K): C = A·B on plain row-major Float32Arrays (the startup self-check and tests). */
static napi_value Sgemm(napi_env env, napi_callback_info info) {
  size_t argc = 6;
  napi_value argv[6];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  float *a, *b, *c;
  size_t la, lb, lc;
  int32_t M, N, K;
  if (argc < 6 || !get_f32(env, argv[0], &a, &la) || !get_f32(env, argv[1], &b, &lb) || !get_f32(env, argv[2], &c, &lc) ||
      napi_get_value_int32(env, argv[3], &M) != napi_ok || napi_get_value_int32(env, argv[4], &N) != napi_ok ||
      napi_get_value_int32(env, argv[5], &K) != napi_ok || M < 1 || N < 1 || K < 1 || la < (size_t)M * K ||
      lb < (size_t)K * N || lc < (size_t)M * N) {
    napi_throw_type_error(env, "D2V_NATIVE_ARGS", "d2v_native.sgemm: bad arguments");
    return NULL;
  }
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, N, K, 1.0f, a, K, b, N, 0.0f, c, N);
  return NULL;
}

static napi_value SetThreads(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  int32_t n;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 1 || napi_get_value_int32(env, argv[0], &n) != napi_ok || n < 1) {
    napi_throw_type_error(env, "D2V_NATIVE_ARGS", "d2v_native.setThreads: expected a positive integer");
    return NULL;
  }
  openblas_set_num_threads(n);
  return NULL;
}

static void set_string(napi_env env, napi_value obj, const char* key, const char* value) {
  napi_value v;
  napi_create_string_utf8(env, value ? value : "", NAPI_AUTO_LENGTH, &v);
  napi_set_named_property(env, obj, key, v);
}

static void set_int(napi_env env, napi_value obj, const char* key, int value) {
  napi_value v;
  napi_create_int32(env, value, &v);
  napi_set_named_property(env, obj, key, v);
}

/* info(): { abi, corename, config, threads, parallel } (parallel: 0 sequential, 1 pthreads, 2 OpenMP). */
static napi_value Info(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value obj;
  napi_create_object(env, &obj);
  set_int(env, obj, "abi", D2V_NATIVE_ABI);
  set_string(env, obj, "corename", openblas_get_corename());
  set_string(env, obj, "config", openblas_get_config());
  set_int(env, obj, "threads", openblas_get_num_threads());
  set_int(env, obj, "parallel", openblas_get_parallel());
  return obj;
}

static napi_value Init(napi_env env, napi_value exports) {
  const napi_property_descriptor props[] = {
      {"gemm", NULL, Gemm, NULL, NULL, NULL, napi_default_method, NULL},
      {"loadKernel", NULL, LoadKernel, NULL, NULL, NULL, napi_default_method, NULL},
      {"runKernel", NULL, RunKernel, NULL, NULL, NULL, napi_default_method, NULL},
      {"sgemm", NULL, Sgemm, NULL, NULL, NULL, napi_enumerable, NULL},
      {"setThreads", NULL, SetThreads, NULL, NULL, NULL, napi_enumerable, NULL},
      {"info", NULL, Info, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  napi_define_properties(env, exports, sizeof(props) / sizeof(props[0]), props);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)

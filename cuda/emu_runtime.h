// emu_runtime.h: the CUDA dialect of gpuconv's kernels, mapped onto host C++ so that
// the unchanged cuda/*.cu sources run on the CPU (the emulation harness, issue 4).
//
// Included first by the translation unit that gpuconv/_emulate.py generates per
// source (this header, then the .cu inside an anonymous namespace, then the
// registry of the instances to build); self-contained (C++ standard library and
// POSIX only), shipped inside the package next to the kernels.
//
// Execution model (deterministic, so a synchronisation bug fails every time):
//   - blocks run one after another (x fastest, then y, then z);
//   - the threads of a block are fibers on one OS thread (own context switch on
//     x86-64, ucontext elsewhere). In each pass every ready thread, in thread-index
//     order (or reversed), runs until its next synchronisation point:
//     __syncthreads*, a warp intrinsic (__shfl_*_sync, __ballot/__any/__all_sync,
//     __syncwarp, __reduce_*_sync, __activemask, and warp_allgather, the exchange
//     under the emulated tensor-core instructions of cuda/mma.cuh) or its exit. Then complete warp
//     rendezvous are resolved, and the block barrier opens once every live thread
//     waits at the same __syncthreads;
//   - static __shared__ variables and the dynamic shared buffer are filled with
//     0xFF bytes (NaN for float/double, -1 for integers) at every block start, so a
//     read before the write that a barrier should have ordered sees poison;
//   - a __syncthreads in divergent code (a thread exits, or waits at another
//     barrier, while others wait), a deadlocked warp rendezvous, a shuffle with an
//     invalid width or a mask without the calling lane are reported as errors
//     instead of hanging;
//   - reading a shuffle value from a lane that does not take part (exited, absent
//     or outside the mask: undefined on a GPU) returns poison (all bits set);
//   - __activemask() is the set of lanes of the warp waiting at the same
//     __activemask call once every thread is blocked;
//   - atomics are plain read-modify-writes (fibers switch only at synchronisation
//     points, so each one is indivisible); fences are no-ops.
// Under -fsanitize=address the fiber switches are annotated for ASan, the dynamic
// shared buffer is a heap block of exactly the launch's size, and every static
// __shared__ variable has redzones (internal linkage through the anonymous
// namespace; -fsanitize-sections=gpuconv_shared for the attribute-placed ones).
//
// What is NOT emulated (by design, so that it fails to compile instead of silently
// misbehaving): __constant__ memory, `extern __shared__` (use
// GPUCONV_DYNAMIC_SHARED(T, name) from common.cuh), half/bfloat16 types, inline PTX,
// cooperative groups, textures, legacy non-_sync warp intrinsics. __CUDA_ARCH__ is
// not defined. Floating point is the host's: no flush-to-zero, contraction as g++
// decides (no FMA contraction at -std=c++17), fma() is exact as on the GPU; fast
// math intrinsics (__expf, rsqrtf, ...) are computed exactly, not approximated.
#pragma once

#define GPUCONV_EMULATED 1

#include <math.h>    // the C++ wrapper: float overloads of sqrt, fma, ... globally
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <limits>
#include <new>
#include <type_traits>
#include <utility>

#if defined(__SANITIZE_ADDRESS__)
#define GPUCONV_EMU_ASAN 1
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#else
#define GPUCONV_EMU_ASAN 0
#endif

#if !defined(__x86_64__) || defined(GPUCONV_EMU_USE_UCONTEXT)
#define GPUCONV_EMU_UCONTEXT 1
#include <ucontext.h>
#else
#define GPUCONV_EMU_UCONTEXT 0
#endif

#include <sys/mman.h>
#include <unistd.h>

#define GPUCONV_EMU_ABI_VERSION 1

// ---------------------------------------------------------------------------------
// Qualifiers and attributes
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline __attribute__((always_inline))
#define __noinline__ __attribute__((noinline))
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))
#define __builtin_align__(n) __attribute__((aligned(n)))
// __shared__ variables become statics (the blocks of a launch run one after
// another, so one instance is the block's). The build wraps the kernel source in an
// anonymous namespace (internal linkage: ASan puts redzones around every static,
// template instances included) and its linker script gathers the kernels'
// function-local statics (.bss._ZZ*) and this section into the output section
// gpuconv_shared, between the symbols gpuconv_emu_shared_begin and _end, which the
// runtime poisons at every block start. (g++ ignores the
// section attribute on statics of function templates, hence the linker script.)
// The runtime itself has no function-local statics.
#define __shared__ static __attribute__((section("gpuconv_shared"), aligned(16)))

// ---------------------------------------------------------------------------------
// Vector types (CUDA's layout and alignment)
#define GPUCONV_EMU_VEC(T, N1, A2, A4)                                                \
    struct N1##1 { T x; };                                                            \
    struct __attribute__((aligned(A2))) N1##2 { T x, y; };                           \
    struct N1##3 { T x, y, z; };                                                      \
    struct __attribute__((aligned(A4))) N1##4 { T x, y, z, w; };                     \
    inline N1##1 make_##N1##1(T x) { return N1##1{x}; }                               \
    inline N1##2 make_##N1##2(T x, T y) { return N1##2{x, y}; }                       \
    inline N1##3 make_##N1##3(T x, T y, T z) { return N1##3{x, y, z}; }               \
    inline N1##4 make_##N1##4(T x, T y, T z, T w) { return N1##4{x, y, z, w}; }
GPUCONV_EMU_VEC(signed char, char, 2, 4)
GPUCONV_EMU_VEC(unsigned char, uchar, 2, 4)
GPUCONV_EMU_VEC(short, short, 4, 8)
GPUCONV_EMU_VEC(unsigned short, ushort, 4, 8)
GPUCONV_EMU_VEC(int, int, 8, 16)
GPUCONV_EMU_VEC(unsigned int, uint, 8, 16)
GPUCONV_EMU_VEC(long long, longlong, 16, 16)
GPUCONV_EMU_VEC(unsigned long long, ulonglong, 16, 16)
GPUCONV_EMU_VEC(float, float, 8, 16)
GPUCONV_EMU_VEC(double, double, 16, 16)
#undef GPUCONV_EMU_VEC

struct dim3 {
    unsigned int x, y, z;
    constexpr dim3(unsigned int vx = 1, unsigned int vy = 1, unsigned int vz = 1)
        : x(vx), y(vy), z(vz) {}
    constexpr dim3(uint3 v) : x(v.x), y(v.y), z(v.z) {}
    constexpr operator uint3() const { return uint3{x, y, z}; }
};

// ---------------------------------------------------------------------------------
// Runtime internals (internal linkage: each kernel library has its own)
namespace gpuconv_emu {

struct Entry {
    const char* name;
    void (*fn)();
    void (*invoke)(void (*)(), void**);
    const char* signature;
    int nparams;
};

namespace {

enum State { READY = 0, AT_BARRIER, AT_WARP, DONE };

enum WarpOp {
    W_SHFL_IDX = 1, W_SHFL_UP, W_SHFL_DOWN, W_SHFL_XOR, W_BALLOT, W_ANY, W_ALL, W_UNI,
    W_SYNCWARP, W_RED_ADD, W_RED_MIN, W_RED_MAX, W_RED_UMIN, W_RED_UMAX, W_RED_AND,
    W_RED_OR, W_RED_XOR, W_ACTIVEMASK, W_ALLGATHER
};

const char* warp_op_name(int op) {
    switch (op) {
        case W_SHFL_IDX: return "__shfl_sync";
        case W_SHFL_UP: return "__shfl_up_sync";
        case W_SHFL_DOWN: return "__shfl_down_sync";
        case W_SHFL_XOR: return "__shfl_xor_sync";
        case W_BALLOT: return "__ballot_sync";
        case W_ANY: return "__any_sync";
        case W_ALL: return "__all_sync";
        case W_UNI: return "__uni_sync";
        case W_SYNCWARP: return "__syncwarp";
        case W_RED_ADD: return "__reduce_add_sync";
        case W_RED_MIN: case W_RED_UMIN: return "__reduce_min_sync";
        case W_RED_MAX: case W_RED_UMAX: return "__reduce_max_sync";
        case W_RED_AND: return "__reduce_and_sync";
        case W_RED_OR: return "__reduce_or_sync";
        case W_RED_XOR: return "__reduce_xor_sync";
        case W_ACTIVEMASK: return "__activemask";
        case W_ALLGATHER: return "warp_allgather";
    }
    return "?";
}

enum BarrierKind { B_PLAIN = 0, B_COUNT, B_AND, B_OR };

const char* barrier_name(int kind) {
    switch (kind) {
        case B_COUNT: return "__syncthreads_count";
        case B_AND: return "__syncthreads_and";
        case B_OR: return "__syncthreads_or";
    }
    return "__syncthreads";
}

struct Fiber {
    void* sp = nullptr;             // saved stack pointer (x86-64 switch)
#if GPUCONV_EMU_UCONTEXT
    ucontext_t ctx;
#endif
    char* map = nullptr;            // mmap'd region: guard page + stack
    char* stack_lo = nullptr;       // lowest usable stack address
    size_t stack_size = 0;
    void* fake_stack = nullptr;     // ASan fiber bookkeeping
    bool dirty = false;             // abandoned mid-run: its stack shadow is stale
    uint3 idx{0, 0, 0};
    unsigned tid = 0, lane = 0, warp = 0;
    int state = READY;
    bool exited_in_phase = false;
    // current synchronisation point
    const char* file = "";
    int line = 0;
    int kind = 0;                   // BarrierKind or WarpOp
    int pred = 0;
    int bar_result = 0;
    unsigned mask = 0;
    int width = 32;
    int arg = 0;
    int size = 4;
    uint64_t value = 0;
    uint64_t result = 0;
    uint64_t* gather_out = nullptr;  // W_ALLGATHER: where the 32 lanes' values go
    // cp.async (cp_async_zfill in cuda/common.cuh): the copies this thread issued and
    // has not waited for, applied by cp_async_wait (so that shared memory read before
    // the wait still holds the old bytes, as a GPU may show them)
    struct CpCopy {
        void* dst;
        const void* src;  // nullptr: zero fill
        int bytes;
        unsigned group;   // the cp.async-group it belongs to (== cp_group: uncommitted)
    };
    static constexpr unsigned kCpQueue = 64;
    CpCopy cp_queue[kCpQueue];
    unsigned cp_count = 0;
    unsigned cp_group = 0;  // groups committed so far
};

}  // namespace
}  // namespace gpuconv_emu

// For debuggers: the linear index of the running thread in its block and of the
// block in the grid (gdb: `break my_kernel if gpuconv_emu_thread == 5`).
extern "C" {
__attribute__((visibility("hidden"), used)) unsigned gpuconv_emu_thread = 0;
__attribute__((visibility("hidden"), used)) unsigned long long gpuconv_emu_block = 0;
}

namespace gpuconv_emu {
namespace {

// launch state
Fiber* g_fibers = nullptr;
unsigned g_nfibers_alloc = 0;
unsigned g_nthreads = 0;
Fiber* g_cur = nullptr;
void* g_sched_sp = nullptr;
#if GPUCONV_EMU_UCONTEXT
ucontext_t g_sched_ctx;
#endif
const void* g_sched_bottom = nullptr;
size_t g_sched_size = 0;
uint3 g_block_idx{0, 0, 0};
dim3 g_block_dim;
dim3 g_grid_dim;
const Entry* g_entry = nullptr;
void** g_args = nullptr;
unsigned char* g_dyn_smem = nullptr;
size_t g_dyn_smem_size = 0;
bool g_failed = false;
char g_err[8192];
// cp.async landing (launch flag 4): at the wait (false: the latest a GPU may land a
// copy, so a read before the wait sees old bytes) or at the issue (true: the
// earliest, so a copy issued into a stage that another thread still reads before
// the next barrier overwrites it under that reader, as a GPU may).
bool g_cp_eager = false;

inline Fiber* cur() {
    if (__builtin_expect(g_cur == nullptr, 0)) {
        fprintf(stderr, "gpuconv emulator: a CUDA built-in was used outside a kernel\n");
        abort();
    }
    return g_cur;
}

}  // namespace

// What the kernels see.
inline const uint3& thread_idx() { return cur()->idx; }
inline const uint3& block_idx() { return g_block_idx; }
inline const dim3& block_dim() { return g_block_dim; }
inline const dim3& grid_dim() { return g_grid_dim; }
inline unsigned char* dynamic_shared() { return g_dyn_smem; }

}  // namespace gpuconv_emu

#define threadIdx (::gpuconv_emu::thread_idx())
#define blockIdx (::gpuconv_emu::block_idx())
#define blockDim (::gpuconv_emu::block_dim())
#define gridDim (::gpuconv_emu::grid_dim())
static constexpr int warpSize = 32;

// Dynamic shared memory (under nvcc/NVRTC: common.cuh's extern __shared__ version).
#define GPUCONV_DYNAMIC_SHARED(T, name) \
    T* name = reinterpret_cast<T*>(::gpuconv_emu::dynamic_shared())

// ---------------------------------------------------------------------------------
// Fibers
#if !GPUCONV_EMU_UCONTEXT
// void gpuconv_emu_switch(void** save_sp, void* new_sp): saves the callee-saved
// registers, MXCSR and the x87 control word on the current stack, stores the stack
// pointer in *save_sp, and resumes the context whose stack pointer is new_sp.
__asm__(
    ".pushsection .text\n"
    ".p2align 4\n"
    ".type gpuconv_emu_switch,@function\n"
    "gpuconv_emu_switch:\n"
    "    pushq %rbp\n"
    "    pushq %rbx\n"
    "    pushq %r12\n"
    "    pushq %r13\n"
    "    pushq %r14\n"
    "    pushq %r15\n"
    "    subq $8, %rsp\n"
    "    stmxcsr (%rsp)\n"
    "    fnstcw 4(%rsp)\n"
    "    movq %rsp, (%rdi)\n"
    "    movq %rsi, %rsp\n"
    "    ldmxcsr (%rsp)\n"
    "    fldcw 4(%rsp)\n"
    "    addq $8, %rsp\n"
    "    popq %r15\n"
    "    popq %r14\n"
    "    popq %r13\n"
    "    popq %r12\n"
    "    popq %rbx\n"
    "    popq %rbp\n"
    "    ret\n"
    ".size gpuconv_emu_switch,.-gpuconv_emu_switch\n"
    ".popsection\n");
extern "C" __attribute__((visibility("hidden"))) void gpuconv_emu_switch(void** save_sp,
                                                                          void* new_sp);
#endif

namespace gpuconv_emu {
namespace {

#if GPUCONV_EMU_ASAN
const size_t kStackSize = 512 * 1024;
#else
const size_t kStackSize = 128 * 1024;
#endif

[[noreturn]] void fiber_main();

// Switch from the scheduler into fiber f; returns when f yields, exits or fails.
void run_fiber(Fiber* f) {
    g_cur = f;
    gpuconv_emu_thread = f->tid;
#if GPUCONV_EMU_ASAN
    void* fake = nullptr;
    __sanitizer_start_switch_fiber(&fake, f->stack_lo, f->stack_size);
#endif
#if GPUCONV_EMU_UCONTEXT
    swapcontext(&g_sched_ctx, &f->ctx);
#else
    gpuconv_emu_switch(&g_sched_sp, f->sp);
#endif
#if GPUCONV_EMU_ASAN
    __sanitizer_finish_switch_fiber(fake, nullptr, nullptr);
#endif
    g_cur = nullptr;
}

// Called on a fiber: back to the scheduler (it resumes us later, or never).
void yield_to_scheduler() {
    Fiber* f = g_cur;
#if GPUCONV_EMU_ASAN
    __sanitizer_start_switch_fiber(&f->fake_stack, g_sched_bottom, g_sched_size);
#endif
#if GPUCONV_EMU_UCONTEXT
    swapcontext(&f->ctx, &g_sched_ctx);
#else
    gpuconv_emu_switch(&f->sp, g_sched_sp);
#endif
#if GPUCONV_EMU_ASAN
    __sanitizer_finish_switch_fiber(f->fake_stack, &g_sched_bottom, &g_sched_size);
#endif
    g_cur = f;
}

// Records an error (first one wins) and abandons the calling fiber.
__attribute__((format(printf, 1, 2))) void set_error(const char* fmt, ...) {
    if (g_failed) return;
    g_failed = true;
    int n = snprintf(g_err, sizeof g_err, "block (%u,%u,%u) of %s: ", g_block_idx.x,
                     g_block_idx.y, g_block_idx.z, g_entry ? g_entry->name : "?");
    if (n < 0) n = 0;
    va_list ap;
    va_start(ap, fmt);
    if (static_cast<size_t>(n) < sizeof g_err) vsnprintf(g_err + n, sizeof g_err - n, fmt, ap);
    va_end(ap);
}

[[noreturn]] void fail_in_fiber() {
    Fiber* f = g_cur;
    f->dirty = true;
    yield_to_scheduler();
    // never resumed
    abort();
}

__attribute__((no_sanitize_address)) void init_fiber_stack(Fiber* f) {
#if GPUCONV_EMU_UCONTEXT
    getcontext(&f->ctx);
    f->ctx.uc_stack.ss_sp = f->stack_lo;
    f->ctx.uc_stack.ss_size = f->stack_size;
    f->ctx.uc_link = nullptr;
    makecontext(&f->ctx, reinterpret_cast<void (*)()>(fiber_main), 0);
#else
    uintptr_t top = reinterpret_cast<uintptr_t>(f->stack_lo + f->stack_size) & ~uintptr_t(15);
    uint64_t* sp = reinterpret_cast<uint64_t*>(top - 72);  // 8 mod 16 after the pops
    uint32_t* ctl = reinterpret_cast<uint32_t*>(sp);
    ctl[0] = 0x1F80;  // MXCSR: all exceptions masked, round to nearest, no FTZ/DAZ
    ctl[1] = 0x037F;  // x87 control word: the default
    for (int i = 1; i <= 6; ++i) sp[i] = 0;  // r15 r14 r13 r12 rbx rbp
    sp[7] = reinterpret_cast<uint64_t>(&fiber_main);
    sp[8] = 0;  // fiber_main's "return address": it never returns
    f->sp = sp;
#endif
}

bool ensure_fibers(unsigned n) {
    if (n <= g_nfibers_alloc) return true;
    Fiber* nf = static_cast<Fiber*>(calloc(n, sizeof(Fiber)));
    if (!nf) return false;
    for (unsigned i = 0; i < n; ++i) new (&nf[i]) Fiber();
    for (unsigned i = 0; i < g_nfibers_alloc; ++i) {
        nf[i].map = g_fibers[i].map;
        nf[i].stack_lo = g_fibers[i].stack_lo;
        nf[i].stack_size = g_fibers[i].stack_size;
        nf[i].dirty = g_fibers[i].dirty;
    }
    const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
    for (unsigned i = g_nfibers_alloc; i < n; ++i) {
        const size_t total = kStackSize + page;
        void* m = mmap(nullptr, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                       -1, 0);
        if (m == MAP_FAILED) {
            free(nf);
            return false;
        }
        mprotect(m, page, PROT_NONE);  // guard page: a stack overflow faults
        nf[i].map = static_cast<char*>(m);
        nf[i].stack_lo = static_cast<char*>(m) + page;
        nf[i].stack_size = kStackSize;
    }
    free(g_fibers);
    g_fibers = nf;
    g_nfibers_alloc = n;
    return true;
}

// The body of every fiber: run the kernel with this thread's indices.
[[noreturn]] __attribute__((no_sanitize_address)) void fiber_main() {
#if GPUCONV_EMU_ASAN
    __sanitizer_finish_switch_fiber(nullptr, &g_sched_bottom, &g_sched_size);
#endif
    g_entry->invoke(g_entry->fn, g_args);
    Fiber* f = g_cur;
    if (f->cp_count != 0)
        set_error("thread %u exited with %u cp.async copies not waited for "
                  "(cp_async_wait<0>() before the kernel returns)", f->tid, f->cp_count);
    f->state = DONE;
    f->exited_in_phase = true;
#if GPUCONV_EMU_ASAN
    __sanitizer_start_switch_fiber(nullptr, g_sched_bottom, g_sched_size);
#endif
#if GPUCONV_EMU_UCONTEXT
    setcontext(&g_sched_ctx);
#else
    void* dead_sp;
    gpuconv_emu_switch(&dead_sp, g_sched_sp);
#endif
    abort();
}

// ---- shared memory poison
// Bounds of the kernels' static shared memory, defined by the build's linker script.
extern "C" char gpuconv_emu_shared_begin[] __attribute__((weak, visibility("hidden")));
extern "C" char gpuconv_emu_shared_end[] __attribute__((weak, visibility("hidden")));

__attribute__((no_sanitize_address, noinline)) void fill_raw(char* lo, char* hi) {
    // No memset: under ASan it would check the redzones between the variables.
    volatile unsigned char* p = reinterpret_cast<volatile unsigned char*>(lo);
    volatile unsigned char* e = reinterpret_cast<volatile unsigned char*>(hi);
    while (p < e && (reinterpret_cast<uintptr_t>(p) & 7)) *p++ = 0xFF;
    volatile uint64_t* q = reinterpret_cast<volatile uint64_t*>(p);
    while (reinterpret_cast<volatile unsigned char*>(q + 1) <= e) *q++ = ~uint64_t(0);
    p = reinterpret_cast<volatile unsigned char*>(q);
    while (p < e) *p++ = 0xFF;
}

void poison_shared() {
    if (gpuconv_emu_shared_begin && gpuconv_emu_shared_end)
        fill_raw(gpuconv_emu_shared_begin, gpuconv_emu_shared_end);
    if (g_dyn_smem && g_dyn_smem_size) memset(g_dyn_smem, 0xFF, g_dyn_smem_size);
}

// ---- synchronisation points (called on fibers)
void warp_check(Fiber* f, unsigned mask, const char* what, const char* file, int line) {
    if (!(mask >> f->lane & 1u)) {
        set_error("%s at %s:%d: the calling thread (lane %u of warp %u) is not in mask "
                  "0x%08x", what, file, line, f->lane, f->warp, mask);
        fail_in_fiber();
    }
}

uint64_t warp_sync_point(int op, unsigned mask, uint64_t value, int size, int arg,
                         int width, const char* file, int line) {
    Fiber* f = cur();
    warp_check(f, mask, warp_op_name(op), file, line);
    if (op >= W_SHFL_IDX && op <= W_SHFL_XOR &&
        (width < 1 || width > 32 || (width & (width - 1)) != 0)) {
        set_error("%s at %s:%d: width %d is not a power of two in [1, 32]",
                  warp_op_name(op), file, line, width);
        fail_in_fiber();
    }
    f->state = AT_WARP;
    f->kind = op;
    f->mask = mask;
    f->value = value;
    f->size = size;
    f->arg = arg;
    f->width = width;
    f->file = file;
    f->line = line;
    yield_to_scheduler();
    return f->result;
}

// The lanes of mask exchange one 64-bit value each: out[j] receives lane j's value
// (all bits set for a lane that does not take part). One synchronisation point; the
// emulated tensor-core instructions (cuda/mma.cuh) gather their fragments with it.
void warp_allgather(unsigned mask, uint64_t value, uint64_t* out, const char* file,
                    int line) {
    cur()->gather_out = out;
    warp_sync_point(W_ALLGATHER, mask, value, 8, 0, 32, file, line);
}

// cp.async, deferred: issue queues a copy of `bytes` from src (zero_fill: zeros,
// src-size 0; src is not read) into dst; commit closes the open group; wait(pending)
// applies every copy of the committed groups but the newest `pending`
// (cp.async.wait_group), in issue order. Both addresses must be aligned to `bytes`,
// the zero fill's src too (the PTX alignment of address operands; a GPU faults with
// "misaligned address", which the deferred memcpy would not show).
void cp_async_issue(void* dst, const void* src, int bytes, bool zero_fill,
                    const char* file, int line) {
    Fiber* f = cur();
    const uintptr_t align = static_cast<uintptr_t>(bytes);
    if (reinterpret_cast<uintptr_t>(dst) % align != 0 ||
        reinterpret_cast<uintptr_t>(src) % align != 0) {
        set_error("cp.async at %s:%d: thread %u: the %s address is not %d-byte aligned",
                  file, line, f->tid,
                  reinterpret_cast<uintptr_t>(dst) % align != 0 ? "shared (dst)"
                                                               : "global (src)",
                  bytes);
        fail_in_fiber();
    }
    if (zero_fill) src = nullptr;
    if (g_cp_eager) {  // lands now (and belongs to no pending group)
        if (src == nullptr)
            memset(dst, 0, static_cast<size_t>(bytes));
        else
            memcpy(dst, src, static_cast<size_t>(bytes));
        return;
    }
    if (f->cp_count == Fiber::kCpQueue) {
        set_error("cp.async at %s:%d: thread %u has more than %u copies in flight", file,
                  line, f->tid, Fiber::kCpQueue);
        fail_in_fiber();
    }
    f->cp_queue[f->cp_count++] = Fiber::CpCopy{dst, src, bytes, f->cp_group};
}

void cp_async_commit() { ++cur()->cp_group; }

void cp_async_wait(unsigned pending) {
    Fiber* f = cur();
    unsigned keep = 0;
    for (unsigned i = 0; i < f->cp_count; ++i) {
        const Fiber::CpCopy c = f->cp_queue[i];
        if (c.group + pending < f->cp_group) {
            if (c.src == nullptr)
                memset(c.dst, 0, static_cast<size_t>(c.bytes));
            else
                memcpy(c.dst, c.src, static_cast<size_t>(c.bytes));
        } else {
            f->cp_queue[keep++] = c;
        }
    }
    f->cp_count = keep;
}

int barrier_sync_point(int kind, int pred, const char* file, int line) {
    Fiber* f = cur();
    f->state = AT_BARRIER;
    f->kind = kind;
    f->pred = pred != 0;
    f->file = file;
    f->line = line;
    yield_to_scheduler();
    return f->bar_result;
}

// ---- scheduler
void describe_threads(char* out, size_t len) {
    // Runs of consecutive threads in the same state at the same place.
    size_t used = 0;
    unsigned i = 0;
    int runs = 0;
    while (i < g_nthreads && used + 1 < len) {
        Fiber& a = g_fibers[i];
        unsigned j = i + 1;
        while (j < g_nthreads) {
            Fiber& b = g_fibers[j];
            if (b.state != a.state) break;
            if (a.state != DONE && (b.kind != a.kind || b.line != a.line ||
                                    strcmp(b.file, a.file) != 0 || b.mask != a.mask))
                break;
            ++j;
        }
        char what[512];
        if (a.state == DONE)
            snprintf(what, sizeof what, "exited");
        else if (a.state == AT_BARRIER)
            snprintf(what, sizeof what, "wait at %s (%s:%d)", barrier_name(a.kind), a.file,
                     a.line);
        else if (a.state == AT_WARP)
            snprintf(what, sizeof what, "wait at %s(mask 0x%08x) (%s:%d)",
                     warp_op_name(a.kind), a.mask, a.file, a.line);
        else
            snprintf(what, sizeof what, "are runnable");
        int n;
        if (j - i == 1)
            n = snprintf(out + used, len - used, "%sthread %u (%u,%u,%u) %s", runs ? "; " : "",
                         i, a.idx.x, a.idx.y, a.idx.z, what);
        else
            n = snprintf(out + used, len - used, "%sthreads %u-%u %s", runs ? "; " : "", i,
                         j - 1, what);
        if (n < 0) break;
        used += static_cast<size_t>(n);
        if (used >= len) break;
        ++runs;
        i = j;
    }
}

// Resolves every complete warp rendezvous; returns whether any was resolved.
bool resolve_warps() {
    bool any = false;
    const unsigned nwarps = (g_nthreads + 31) / 32;
    for (unsigned w = 0; w < nwarps; ++w) {
        const unsigned base = w * 32;
        const unsigned nl = (g_nthreads - base < 32) ? g_nthreads - base : 32;
        // __activemask: once every thread is blocked, the lanes of this warp that
        // wait at the same __activemask are the converged ones.
        for (unsigned l = 0; l < nl; ++l) {
            Fiber& f = g_fibers[base + l];
            if (f.state != AT_WARP || f.kind != W_ACTIVEMASK) continue;
            unsigned active = 0;
            for (unsigned m = 0; m < nl; ++m) {
                Fiber& g = g_fibers[base + m];
                if (g.state == AT_WARP && g.kind == W_ACTIVEMASK && g.line == f.line &&
                    strcmp(g.file, f.file) == 0)
                    active |= 1u << m;
            }
            for (unsigned m = 0; m < nl; ++m) {
                if (!(active >> m & 1u)) continue;
                g_fibers[base + m].result = active;
                g_fibers[base + m].state = READY;
            }
            any = true;
        }
        for (unsigned l = 0; l < nl; ++l) {
            Fiber& f = g_fibers[base + l];
            if (f.state != AT_WARP) continue;
            const unsigned mask = f.mask;
            unsigned members = 0;  // lanes that take part: in mask, present, not exited
            bool complete = true;
            for (unsigned m = 0; m < nl; ++m) {
                if (!(mask >> m & 1u)) continue;
                Fiber& g = g_fibers[base + m];
                if (g.state == DONE) continue;
                if (g.state != AT_WARP || g.mask != mask || g.kind != f.kind ||
                    g.width != f.width || g.size != f.size) {
                    complete = false;
                    break;
                }
                members |= 1u << m;
            }
            if (!complete) continue;
            const int op = f.kind;
            const uint64_t poison = f.size == 8 ? ~uint64_t(0) : uint64_t(0xFFFFFFFFu);
            unsigned ballot = 0;
            for (unsigned m = 0; m < nl; ++m)
                if ((members >> m & 1u) && g_fibers[base + m].value) ballot |= 1u << m;
            uint64_t red = 0;
            if (op >= W_RED_ADD && op <= W_RED_XOR) {
                bool first = true;
                for (unsigned m = 0; m < nl; ++m) {
                    if (!(members >> m & 1u)) continue;
                    const uint32_t v = static_cast<uint32_t>(g_fibers[base + m].value);
                    const uint32_t r = static_cast<uint32_t>(red);
                    uint32_t nv = v;
                    if (!first) {
                        switch (op) {
                            case W_RED_ADD: nv = r + v; break;
                            case W_RED_MIN:
                                nv = static_cast<int32_t>(v) < static_cast<int32_t>(r) ? v : r;
                                break;
                            case W_RED_MAX:
                                nv = static_cast<int32_t>(v) > static_cast<int32_t>(r) ? v : r;
                                break;
                            case W_RED_UMIN: nv = v < r ? v : r; break;
                            case W_RED_UMAX: nv = v > r ? v : r; break;
                            case W_RED_AND: nv = r & v; break;
                            case W_RED_OR: nv = r | v; break;
                            case W_RED_XOR: nv = r ^ v; break;
                        }
                    }
                    red = nv;
                    first = false;
                }
            }
            for (unsigned m = 0; m < nl; ++m) {
                if (!(members >> m & 1u)) continue;
                Fiber& g = g_fibers[base + m];
                switch (op) {
                    case W_SHFL_IDX: case W_SHFL_UP: case W_SHFL_DOWN: case W_SHFL_XOR: {
                        // PTX shfl.sync semantics, c = ((32 - width) << 8) | clamp.
                        const int lane = static_cast<int>(m);
                        const int segmask = (32 - g.width) & 31;
                        const int cval = (op == W_SHFL_UP) ? 0 : 31;
                        const int b = g.arg & 31;
                        const int max_lane = (lane & segmask) | (cval & ~segmask);
                        const int min_lane = lane & segmask;
                        int j = lane;
                        bool pval = false;
                        if (op == W_SHFL_UP) { j = lane - b; pval = j >= max_lane; }
                        else if (op == W_SHFL_DOWN) { j = lane + b; pval = j <= max_lane; }
                        else if (op == W_SHFL_XOR) { j = lane ^ b; pval = j <= max_lane; }
                        else { j = min_lane | (b & ~segmask); pval = j <= max_lane; }
                        if (!pval) j = lane;
                        if (j >= 0 && j < 32 && (members >> j & 1u))
                            g.result = g_fibers[base + j].value;
                        else
                            g.result = poison;  // undefined on a GPU
                        break;
                    }
                    case W_BALLOT: g.result = ballot; break;
                    case W_ANY: g.result = ballot != 0; break;
                    case W_ALL: g.result = ballot == members; break;
                    case W_UNI: g.result = ballot == 0 || ballot == members; break;
                    case W_SYNCWARP: g.result = 0; break;
                    case W_ALLGATHER:
                        for (unsigned j = 0; j < 32; ++j)
                            g.gather_out[j] = (j < nl && (members >> j & 1u))
                                                  ? g_fibers[base + j].value
                                                  : poison;
                        g.result = 0;
                        break;
                    default: g.result = red; break;
                }
            }
            for (unsigned m = 0; m < nl; ++m)
                if (members >> m & 1u) g_fibers[base + m].state = READY;
            any = true;
        }
    }
    return any;
}

// All live threads wait at a barrier: check it is one barrier, then open it.
bool release_barrier() {
    Fiber* first = nullptr;
    for (unsigned i = 0; i < g_nthreads; ++i) {
        Fiber& f = g_fibers[i];
        if (f.state == DONE) continue;
        if (f.state != AT_BARRIER) return false;
        if (!first) first = &f;
    }
    if (!first) return false;
    char desc[4096];
    for (unsigned i = 0; i < g_nthreads; ++i) {
        Fiber& f = g_fibers[i];
        if (f.state == DONE && f.exited_in_phase) {
            describe_threads(desc, sizeof desc);
            set_error("__syncthreads in divergent code: thread %u (%u,%u,%u) exited while "
                      "other threads wait at %s (%s:%d) [%s]",
                      i, f.idx.x, f.idx.y, f.idx.z, barrier_name(first->kind), first->file,
                      first->line, desc);
            return false;
        }
        if (f.state == AT_BARRIER &&
            (f.kind != first->kind || f.line != first->line || strcmp(f.file, first->file))) {
            describe_threads(desc, sizeof desc);
            set_error("__syncthreads in divergent code: threads wait at different barriers "
                      "(%s:%d and %s:%d) [%s]",
                      first->file, first->line, f.file, f.line, desc);
            return false;
        }
    }
    int count = 0, live = 0;
    for (unsigned i = 0; i < g_nthreads; ++i) {
        Fiber& f = g_fibers[i];
        if (f.state != AT_BARRIER) continue;
        ++live;
        count += f.pred;
    }
    int res = 0;
    switch (first->kind) {
        case B_COUNT: res = count; break;
        case B_AND: res = count == live; break;
        case B_OR: res = count != 0; break;
    }
    for (unsigned i = 0; i < g_nthreads; ++i) {
        Fiber& f = g_fibers[i];
        f.exited_in_phase = false;
        if (f.state == AT_BARRIER) {
            f.bar_result = res;
            f.state = READY;
        }
    }
    return true;
}

void cleanup_abandoned() {
    for (unsigned i = 0; i < g_nfibers_alloc; ++i) {
        Fiber& f = g_fibers[i];
        if (i < g_nthreads && f.state != DONE) f.dirty = true;
#if GPUCONV_EMU_ASAN
        if (f.dirty) __asan_unpoison_memory_region(f.stack_lo, f.stack_size);
#endif
        f.dirty = false;
    }
}

// Whether a fiber of warp w is ready to run.
bool warp_ready(unsigned w) {
    const unsigned end = (w + 1) * 32 < g_nthreads ? (w + 1) * 32 : g_nthreads;
    for (unsigned i = w * 32; i < end; ++i)
        if (g_fibers[i].state == READY) return true;
    return false;
}

// serial: one warp at a time (the first with a ready thread, in warp order or
// reversed) runs until all its threads block at a barrier or exit, its own warp
// rendezvous resolved as they complete, before the next warp starts: the largest
// skew between warps (a warp can finish its slab and start the next before another
// has read anything), where the default passes keep warps in lockstep from one
// warp-synchronous point to the next.
bool run_block(bool reverse, bool serial) {
    for (unsigned i = 0; i < g_nthreads; ++i) {
        Fiber& f = g_fibers[i];
        const unsigned bx = g_block_dim.x, by = g_block_dim.y;
        f.idx = uint3{i % bx, (i / bx) % by, i / (bx * by)};
        f.tid = i;
        f.lane = i % 32;
        f.warp = i / 32;
        f.state = READY;
        f.exited_in_phase = false;
        f.file = "";
        f.line = 0;
        f.kind = 0;
        f.cp_count = 0;
        f.cp_group = 0;
        init_fiber_stack(&f);
    }
    const unsigned nwarps = (g_nthreads + 31) / 32;
    for (;;) {
        unsigned lo = 0, hi = g_nthreads;  // the threads this pass runs
        if (serial) {
            for (unsigned k = 0; k < nwarps; ++k) {
                const unsigned w = reverse ? nwarps - 1 - k : k;
                if (!warp_ready(w)) continue;
                lo = w * 32;
                hi = lo + 32 < g_nthreads ? lo + 32 : g_nthreads;
                break;
            }
        }
        for (unsigned k = lo; k < hi; ++k) {
            Fiber& f = g_fibers[reverse ? hi - 1 - (k - lo) : k];
            if (f.state != READY) continue;
            run_fiber(&f);
            if (g_failed) return false;
        }
        bool live = false;
        for (unsigned i = 0; i < g_nthreads && !live; ++i) live = g_fibers[i].state != DONE;
        if (!live) return true;
        if (resolve_warps()) continue;
        if (serial) {  // other warps still to run before the barrier can open
            bool ready = false;
            for (unsigned w = 0; w < nwarps && !ready; ++w) ready = warp_ready(w);
            if (ready) continue;
        }
        if (release_barrier()) continue;
        if (g_failed) return false;
        char desc[6144];
        describe_threads(desc, sizeof desc);
        set_error("deadlock: no thread can make progress (a warp intrinsic whose mask names "
                  "a thread that waits elsewhere, or a barrier not reached by all): %s",
                  desc);
        return false;
    }
}

}  // namespace

// Runs one launch. Returns 0, or -1 with a message in g_err.
inline int launch(const Entry* e, const unsigned* grid, const unsigned* block, size_t shmem,
                  void** args, unsigned flags) {
    g_failed = false;
    g_err[0] = 0;
    g_entry = e;
    g_args = args;
    g_grid_dim = dim3(grid[0], grid[1], grid[2]);
    g_block_dim = dim3(block[0], block[1], block[2]);
    const unsigned long long nthreads =
        static_cast<unsigned long long>(block[0]) * block[1] * block[2];
    if (nthreads == 0 || nthreads > 1024 || grid[0] == 0 || grid[1] == 0 || grid[2] == 0) {
        snprintf(g_err, sizeof g_err, "invalid launch of %s: grid (%u,%u,%u) block (%u,%u,%u)",
                 e->name, grid[0], grid[1], grid[2], block[0], block[1], block[2]);
        return -1;
    }
    g_nthreads = static_cast<unsigned>(nthreads);
    if (!ensure_fibers(g_nthreads)) {
        snprintf(g_err, sizeof g_err, "out of memory for %u fiber stacks", g_nthreads);
        return -1;
    }
    // The dynamic shared buffer: a heap block of exactly the launch's size (ASan
    // reports any access past it), 128-byte aligned like the GPU's.
    void* dyn = nullptr;
    if (posix_memalign(&dyn, 128, shmem ? shmem : 1) != 0) {
        snprintf(g_err, sizeof g_err, "out of memory for %zu bytes of shared memory", shmem);
        return -1;
    }
#if GPUCONV_EMU_ASAN
    if (!shmem) __asan_poison_memory_region(dyn, 1);
#endif
    g_dyn_smem = static_cast<unsigned char*>(dyn);
    g_dyn_smem_size = shmem;
    const bool poison = flags & 1u;
    const bool reverse = flags & 2u;
    g_cp_eager = flags & 4u;
    const bool serial = flags & 8u;
    bool ok = true;
    for (unsigned bz = 0; bz < grid[2] && ok; ++bz)
        for (unsigned by = 0; by < grid[1] && ok; ++by)
            for (unsigned bx = 0; bx < grid[0] && ok; ++bx) {
                g_block_idx = uint3{bx, by, bz};
                gpuconv_emu_block =
                    (static_cast<unsigned long long>(bz) * grid[1] + by) * grid[0] + bx;
                if (poison) poison_shared();
                ok = run_block(reverse, serial);
            }
    if (!ok) cleanup_abandoned();
#if GPUCONV_EMU_ASAN
    if (!shmem) __asan_unpoison_memory_region(dyn, 1);
#endif
    free(dyn);
    g_dyn_smem = nullptr;
    g_dyn_smem_size = 0;
    g_entry = nullptr;
    g_args = nullptr;
    fflush(stdout);
    return ok ? 0 : -1;
}

inline const char* last_error() { return g_err; }

// ---- the registry: kernel signature strings and the generic invoker
namespace {

template <class T, class = void>
struct TypeCode {
    static void append(char* s) {
        static_assert(std::is_trivially_copyable<T>::value,
                      "a kernel parameter must be trivially copyable");
        snprintf(s + strlen(s), 16, "s%zu", sizeof(T));
    }
};
template <> struct TypeCode<void> { static void append(char* s) { strcat(s, "v"); } };
template <> struct TypeCode<float> { static void append(char* s) { strcat(s, "f"); } };
template <> struct TypeCode<double> { static void append(char* s) { strcat(s, "d"); } };
template <> struct TypeCode<bool> { static void append(char* s) { strcat(s, "?"); } };
template <class T>
struct TypeCode<T, std::enable_if_t<std::is_integral<T>::value && !std::is_same<T, bool>::value>> {
    static void append(char* s) {
        const bool sg = std::is_signed<T>::value;
        switch (sizeof(T)) {
            case 1: strcat(s, sg ? "b" : "B"); break;
            case 2: strcat(s, sg ? "h" : "H"); break;
            case 4: strcat(s, sg ? "i" : "I"); break;
            default: strcat(s, sg ? "l" : "L"); break;
        }
    }
};

template <class T>
struct ParamCode {
    static void append(char* s) { TypeCode<std::remove_cv_t<T>>::append(s); }
};
template <class T>
struct ParamCode<T*> {
    static void append(char* s) {
        strcat(s, std::is_const<T>::value ? "p" : "P");
        TypeCode<std::remove_cv_t<T>>::append(s);
    }
};

template <class... A>
struct Invoker {
    static_assert(!std::disjunction<std::is_reference<A>...>::value,
                  "a kernel cannot take references");
    template <size_t... I>
    static void call(void (*f)(A...), void** args, std::index_sequence<I...>) {
        f(*static_cast<std::remove_cv_t<A>*>(args[I])...);
    }
    static void invoke(void (*fn)(), void** args) {
        call(reinterpret_cast<void (*)(A...)>(fn), args, std::index_sequence_for<A...>{});
    }
    static const char* signature() {
        // Built once per entry at load time; malloc'd (the runtime keeps no
        // function-local statics: the linker script collects those as shared memory).
        char* sig = static_cast<char*>(calloc(1, 64 * (sizeof...(A) + 1)));
        if (sig && sizeof...(A)) {
            int i = 0;
            ((i++ ? strcat(sig, ",") : sig, ParamCode<A>::append(sig)), ...);
        }
        return sig;
    }
};

template <class... A>
Entry make_entry(const char* name, void (*fn)(A...)) {
    return Entry{name, reinterpret_cast<void (*)()>(fn), &Invoker<A...>::invoke,
                 Invoker<A...>::signature(), static_cast<int>(sizeof...(A))};
}

// Defined by the generated translation unit: the registered instances.
const Entry* registry(int* n);

}  // namespace
}  // namespace gpuconv_emu

// The C entry points of a kernel library (loaded with ctypes, or by the runner).
#define GPUCONV_EMU_API extern "C" __attribute__((visibility("default"), used))
#define GPUCONV_EMU_DEFINE_API                                                          \
    GPUCONV_EMU_API int gpuconv_emu_abi_version() { return GPUCONV_EMU_ABI_VERSION; }  \
    GPUCONV_EMU_API int gpuconv_emu_sanitized() { return GPUCONV_EMU_ASAN; }           \
    GPUCONV_EMU_API int gpuconv_emu_kernel_count() {                                   \
        int n = 0;                                                                      \
        ::gpuconv_emu::registry(&n);                                                    \
        return n;                                                                       \
    }                                                                                   \
    GPUCONV_EMU_API const char* gpuconv_emu_kernel_name(int i) {                       \
        int n = 0;                                                                      \
        const ::gpuconv_emu::Entry* e = ::gpuconv_emu::registry(&n);                    \
        return (i >= 0 && i < n) ? e[i].name : nullptr;                                 \
    }                                                                                   \
    GPUCONV_EMU_API const char* gpuconv_emu_kernel_signature(int i) {                  \
        int n = 0;                                                                      \
        const ::gpuconv_emu::Entry* e = ::gpuconv_emu::registry(&n);                    \
        return (i >= 0 && i < n) ? e[i].signature : nullptr;                            \
    }                                                                                   \
    GPUCONV_EMU_API int gpuconv_emu_launch(int i, const unsigned* grid,                \
                                           const unsigned* block,                      \
                                           unsigned long long shmem, void** args,      \
                                           unsigned flags) {                           \
        int n = 0;                                                                      \
        const ::gpuconv_emu::Entry* e = ::gpuconv_emu::registry(&n);                    \
        if (i < 0 || i >= n) return -2;                                                 \
        return ::gpuconv_emu::launch(&e[i], grid, block, static_cast<size_t>(shmem),    \
                                     args, flags);                                      \
    }                                                                                   \
    GPUCONV_EMU_API const char* gpuconv_emu_last_error() {                             \
        return ::gpuconv_emu::last_error();                                             \
    }

// ---------------------------------------------------------------------------------
// Synchronisation
inline void __syncthreads(const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
    gpuconv_emu::barrier_sync_point(gpuconv_emu::B_PLAIN, 0, file, line);
}
inline int __syncthreads_count(int pred, const char* file = __builtin_FILE(),
                               int line = __builtin_LINE()) {
    return gpuconv_emu::barrier_sync_point(gpuconv_emu::B_COUNT, pred, file, line);
}
inline int __syncthreads_and(int pred, const char* file = __builtin_FILE(),
                             int line = __builtin_LINE()) {
    return gpuconv_emu::barrier_sync_point(gpuconv_emu::B_AND, pred, file, line);
}
inline int __syncthreads_or(int pred, const char* file = __builtin_FILE(),
                            int line = __builtin_LINE()) {
    return gpuconv_emu::barrier_sync_point(gpuconv_emu::B_OR, pred, file, line);
}
inline void __syncwarp(unsigned mask = 0xffffffffu, const char* file = __builtin_FILE(),
                       int line = __builtin_LINE()) {
    gpuconv_emu::warp_sync_point(gpuconv_emu::W_SYNCWARP, mask, 0, 4, 0, 32, file, line);
}
// Memory fences: one OS thread, all writes are visible at once.
inline void __threadfence() {}
inline void __threadfence_block() {}
inline void __threadfence_system() {}

// ---- warp intrinsics (the overload set of CUDA's sm_30_intrinsics.h)
namespace gpuconv_emu {
namespace {
template <class T>
inline T shfl(int op, unsigned mask, T var, int arg, int width, const char* file, int line) {
    static_assert(sizeof(T) == 4 || sizeof(T) == 8, "shuffles move 4 or 8 bytes");
    uint64_t bits = 0;
    memcpy(&bits, &var, sizeof(T));
    bits = warp_sync_point(op, mask, bits, static_cast<int>(sizeof(T)), arg, width, file, line);
    T out;
    memcpy(&out, &bits, sizeof(T));
    return out;
}
}  // namespace
}  // namespace gpuconv_emu

#define GPUCONV_EMU_SHFL(NAME, OP, ARGT)                                               \
    inline int NAME(unsigned mask, int v, ARGT a, int width = warpSize,                 \
                    const char* f = __builtin_FILE(), int l = __builtin_LINE()) {       \
        return gpuconv_emu::shfl(OP, mask, v, static_cast<int>(a), width, f, l);        \
    }                                                                                   \
    inline unsigned NAME(unsigned mask, unsigned v, ARGT a, int width = warpSize,       \
                         const char* f = __builtin_FILE(), int l = __builtin_LINE()) {  \
        return gpuconv_emu::shfl(OP, mask, v, static_cast<int>(a), width, f, l);        \
    }                                                                                   \
    inline long NAME(unsigned mask, long v, ARGT a, int width = warpSize,               \
                     const char* f = __builtin_FILE(), int l = __builtin_LINE()) {      \
        return gpuconv_emu::shfl(OP, mask, v, static_cast<int>(a), width, f, l);        \
    }                                                                                   \
    inline unsigned long NAME(unsigned mask, unsigned long v, ARGT a,                  \
                              int width = warpSize, const char* f = __builtin_FILE(),   \
                              int l = __builtin_LINE()) {                               \
        return gpuconv_emu::shfl(OP, mask, v, static_cast<int>(a), width, f, l);        \
    }                                                                                   \
    inline long long NAME(unsigned mask, long long v, ARGT a, int width = warpSize,     \
                          const char* f = __builtin_FILE(), int l = __builtin_LINE()) { \
        return gpuconv_emu::shfl(OP, mask, v, static_cast<int>(a), width, f, l);        \
    }                                                                                   \
    inline unsigned long long NAME(unsigned mask, unsigned long long v, ARGT a,        \
                                   int width = warpSize,                                \
                                   const char* f = __builtin_FILE(),                    \
                                   int l = __builtin_LINE()) {                          \
        return gpuconv_emu::shfl(OP, mask, v, static_cast<int>(a), width, f, l);        \
    }                                                                                   \
    inline float NAME(unsigned mask, float v, ARGT a, int width = warpSize,             \
                      const char* f = __builtin_FILE(), int l = __builtin_LINE()) {     \
        return gpuconv_emu::shfl(OP, mask, v, static_cast<int>(a), width, f, l);        \
    }                                                                                   \
    inline double NAME(unsigned mask, double v, ARGT a, int width = warpSize,           \
                       const char* f = __builtin_FILE(), int l = __builtin_LINE()) {    \
        return gpuconv_emu::shfl(OP, mask, v, static_cast<int>(a), width, f, l);        \
    }
GPUCONV_EMU_SHFL(__shfl_sync, gpuconv_emu::W_SHFL_IDX, int)
GPUCONV_EMU_SHFL(__shfl_up_sync, gpuconv_emu::W_SHFL_UP, unsigned int)
GPUCONV_EMU_SHFL(__shfl_down_sync, gpuconv_emu::W_SHFL_DOWN, unsigned int)
GPUCONV_EMU_SHFL(__shfl_xor_sync, gpuconv_emu::W_SHFL_XOR, int)
#undef GPUCONV_EMU_SHFL

#define GPUCONV_EMU_VOTE(NAME, OP, RET)                                                 \
    inline RET NAME(unsigned mask, int pred, const char* f = __builtin_FILE(),          \
                    int l = __builtin_LINE()) {                                         \
        return static_cast<RET>(                                                        \
            gpuconv_emu::warp_sync_point(OP, mask, pred != 0, 4, 0, 32, f, l));        \
    }
GPUCONV_EMU_VOTE(__ballot_sync, gpuconv_emu::W_BALLOT, unsigned)
GPUCONV_EMU_VOTE(__any_sync, gpuconv_emu::W_ANY, int)
GPUCONV_EMU_VOTE(__all_sync, gpuconv_emu::W_ALL, int)
GPUCONV_EMU_VOTE(__uni_sync, gpuconv_emu::W_UNI, int)
#undef GPUCONV_EMU_VOTE

#define GPUCONV_EMU_REDUCE(NAME, T, OP)                                                 \
    inline T NAME(unsigned mask, T v, const char* f = __builtin_FILE(),                 \
                  int l = __builtin_LINE()) {                                           \
        uint32_t bits;                                                                  \
        memcpy(&bits, &v, 4);                                                           \
        bits = static_cast<uint32_t>(                                                   \
            gpuconv_emu::warp_sync_point(OP, mask, bits, 4, 0, 32, f, l));             \
        T out;                                                                          \
        memcpy(&out, &bits, 4);                                                         \
        return out;                                                                     \
    }
GPUCONV_EMU_REDUCE(__reduce_add_sync, int, gpuconv_emu::W_RED_ADD)
GPUCONV_EMU_REDUCE(__reduce_add_sync, unsigned, gpuconv_emu::W_RED_ADD)
GPUCONV_EMU_REDUCE(__reduce_min_sync, int, gpuconv_emu::W_RED_MIN)
GPUCONV_EMU_REDUCE(__reduce_min_sync, unsigned, gpuconv_emu::W_RED_UMIN)
GPUCONV_EMU_REDUCE(__reduce_max_sync, int, gpuconv_emu::W_RED_MAX)
GPUCONV_EMU_REDUCE(__reduce_max_sync, unsigned, gpuconv_emu::W_RED_UMAX)
GPUCONV_EMU_REDUCE(__reduce_and_sync, unsigned, gpuconv_emu::W_RED_AND)
GPUCONV_EMU_REDUCE(__reduce_or_sync, unsigned, gpuconv_emu::W_RED_OR)
GPUCONV_EMU_REDUCE(__reduce_xor_sync, unsigned, gpuconv_emu::W_RED_XOR)
#undef GPUCONV_EMU_REDUCE

// The lanes of the caller's warp that are converged with it: those that reach the
// same __activemask call before the warp can go on (lanes that exited, or that wait
// at another synchronisation point, count as diverged). A synchronisation point
// here, so that the sequential schedule does not make lanes look exited.
inline unsigned __activemask(const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
    const unsigned own = 1u << gpuconv_emu::cur()->lane;
    return static_cast<unsigned>(
        gpuconv_emu::warp_sync_point(gpuconv_emu::W_ACTIVEMASK, own, 0, 4, 0, 32, file, line));
}

// ---------------------------------------------------------------------------------
// Atomics: plain read-modify-writes (a fiber switches only at sync points).
#define GPUCONV_EMU_ATOMIC2(NAME, T, EXPR)                                              \
    inline T NAME(T* address, T val) {                                                  \
        T old = *address;                                                               \
        *address = (EXPR);                                                              \
        return old;                                                                     \
    }                                                                                   \
    inline T NAME##_block(T* address, T val) { return NAME(address, val); }            \
    inline T NAME##_system(T* address, T val) { return NAME(address, val); }
GPUCONV_EMU_ATOMIC2(atomicAdd, int, static_cast<int>(static_cast<unsigned>(old) +
                                                     static_cast<unsigned>(val)))
GPUCONV_EMU_ATOMIC2(atomicAdd, unsigned int, old + val)
GPUCONV_EMU_ATOMIC2(atomicAdd, unsigned long long, old + val)
GPUCONV_EMU_ATOMIC2(atomicAdd, float, old + val)
GPUCONV_EMU_ATOMIC2(atomicAdd, double, old + val)
GPUCONV_EMU_ATOMIC2(atomicSub, int, static_cast<int>(static_cast<unsigned>(old) -
                                                     static_cast<unsigned>(val)))
GPUCONV_EMU_ATOMIC2(atomicSub, unsigned int, old - val)
GPUCONV_EMU_ATOMIC2(atomicExch, int, val)
GPUCONV_EMU_ATOMIC2(atomicExch, unsigned int, val)
GPUCONV_EMU_ATOMIC2(atomicExch, unsigned long long, val)
GPUCONV_EMU_ATOMIC2(atomicExch, float, val)
GPUCONV_EMU_ATOMIC2(atomicMin, int, val < old ? val : old)
GPUCONV_EMU_ATOMIC2(atomicMin, unsigned int, val < old ? val : old)
GPUCONV_EMU_ATOMIC2(atomicMin, long long, val < old ? val : old)
GPUCONV_EMU_ATOMIC2(atomicMin, unsigned long long, val < old ? val : old)
GPUCONV_EMU_ATOMIC2(atomicMax, int, val > old ? val : old)
GPUCONV_EMU_ATOMIC2(atomicMax, unsigned int, val > old ? val : old)
GPUCONV_EMU_ATOMIC2(atomicMax, long long, val > old ? val : old)
GPUCONV_EMU_ATOMIC2(atomicMax, unsigned long long, val > old ? val : old)
GPUCONV_EMU_ATOMIC2(atomicAnd, int, old & val)
GPUCONV_EMU_ATOMIC2(atomicAnd, unsigned int, old & val)
GPUCONV_EMU_ATOMIC2(atomicAnd, long long, old & val)
GPUCONV_EMU_ATOMIC2(atomicAnd, unsigned long long, old & val)
GPUCONV_EMU_ATOMIC2(atomicOr, int, old | val)
GPUCONV_EMU_ATOMIC2(atomicOr, unsigned int, old | val)
GPUCONV_EMU_ATOMIC2(atomicOr, long long, old | val)
GPUCONV_EMU_ATOMIC2(atomicOr, unsigned long long, old | val)
GPUCONV_EMU_ATOMIC2(atomicXor, int, old ^ val)
GPUCONV_EMU_ATOMIC2(atomicXor, unsigned int, old ^ val)
GPUCONV_EMU_ATOMIC2(atomicXor, long long, old ^ val)
GPUCONV_EMU_ATOMIC2(atomicXor, unsigned long long, old ^ val)
GPUCONV_EMU_ATOMIC2(atomicInc, unsigned int, old >= val ? 0u : old + 1u)
GPUCONV_EMU_ATOMIC2(atomicDec, unsigned int, (old == 0u || old > val) ? val : old - 1u)
#undef GPUCONV_EMU_ATOMIC2

#define GPUCONV_EMU_CAS(T)                                                              \
    inline T atomicCAS(T* address, T compare, T val) {                                 \
        T old = *address;                                                               \
        if (old == compare) *address = val;                                             \
        return old;                                                                     \
    }                                                                                   \
    inline T atomicCAS_block(T* address, T compare, T val) {                           \
        return atomicCAS(address, compare, val);                                        \
    }                                                                                   \
    inline T atomicCAS_system(T* address, T compare, T val) {                          \
        return atomicCAS(address, compare, val);                                        \
    }
GPUCONV_EMU_CAS(int)
GPUCONV_EMU_CAS(unsigned int)
GPUCONV_EMU_CAS(unsigned long long)
GPUCONV_EMU_CAS(unsigned short)
#undef GPUCONV_EMU_CAS

// ---------------------------------------------------------------------------------
// Loads and stores with cache hints: plain accesses.
template <class T> inline T __ldg(const T* p) { return *p; }
template <class T> inline T __ldca(const T* p) { return *p; }
template <class T> inline T __ldcg(const T* p) { return *p; }
template <class T> inline T __ldcs(const T* p) { return *p; }
template <class T> inline T __ldlu(const T* p) { return *p; }
template <class T> inline T __ldcv(const T* p) { return *p; }
template <class T> inline void __stwb(T* p, T v) { *p = v; }
template <class T> inline void __stcg(T* p, T v) { *p = v; }
template <class T> inline void __stcs(T* p, T v) { *p = v; }
template <class T> inline void __stwt(T* p, T v) { *p = v; }

// ---------------------------------------------------------------------------------
// Integer and float math (the overload sets of CUDA's math_functions.hpp)
#define GPUCONV_EMU_MINMAX(R, A, B)                                                     \
    inline R min(A a, B b) { return static_cast<R>(a) < static_cast<R>(b)               \
                                        ? static_cast<R>(a) : static_cast<R>(b); }      \
    inline R max(A a, B b) { return static_cast<R>(a) > static_cast<R>(b)               \
                                        ? static_cast<R>(a) : static_cast<R>(b); }
GPUCONV_EMU_MINMAX(int, int, int)
GPUCONV_EMU_MINMAX(unsigned int, unsigned int, unsigned int)
GPUCONV_EMU_MINMAX(unsigned int, int, unsigned int)
GPUCONV_EMU_MINMAX(unsigned int, unsigned int, int)
GPUCONV_EMU_MINMAX(long, long, long)
GPUCONV_EMU_MINMAX(unsigned long, unsigned long, unsigned long)
GPUCONV_EMU_MINMAX(unsigned long, long, unsigned long)
GPUCONV_EMU_MINMAX(unsigned long, unsigned long, long)
GPUCONV_EMU_MINMAX(long long, long long, long long)
GPUCONV_EMU_MINMAX(unsigned long long, unsigned long long, unsigned long long)
GPUCONV_EMU_MINMAX(unsigned long long, long long, unsigned long long)
GPUCONV_EMU_MINMAX(unsigned long long, unsigned long long, long long)
#undef GPUCONV_EMU_MINMAX
inline float min(float a, float b) { return fminf(a, b); }
inline float max(float a, float b) { return fmaxf(a, b); }
inline double min(double a, double b) { return fmin(a, b); }
inline double max(double a, double b) { return fmax(a, b); }
inline double min(float a, double b) { return fmin(a, b); }
inline double max(float a, double b) { return fmax(a, b); }
inline double min(double a, float b) { return fmin(a, b); }
inline double max(double a, float b) { return fmax(a, b); }

inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
inline double rsqrt(double x) { return 1.0 / sqrt(x); }
inline float rcbrtf(float x) { return 1.0f / cbrtf(x); }
inline double rcbrt(double x) { return 1.0 / cbrt(x); }
inline float __fmaf_rn(float a, float b, float c) { return fmaf(a, b, c); }
inline double __fma_rn(double a, double b, double c) { return fma(a, b, c); }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fdiv_rn(float a, float b) { return a / b; }
inline double __dadd_rn(double a, double b) { return a + b; }
inline double __dsub_rn(double a, double b) { return a - b; }
inline double __dmul_rn(double a, double b) { return a * b; }
inline double __ddiv_rn(double a, double b) { return a / b; }
inline float __frcp_rn(float a) { return 1.0f / a; }
inline double __drcp_rn(double a) { return 1.0 / a; }
inline float __fsqrt_rn(float a) { return sqrtf(a); }
inline double __dsqrt_rn(double a) { return sqrt(a); }
inline float __fdividef(float a, float b) { return a / b; }
inline float fdividef(float a, float b) { return a / b; }
inline float __expf(float x) { return expf(x); }
inline float __exp10f(float x) { return powf(10.0f, x); }
inline float __logf(float x) { return logf(x); }
inline float __log2f(float x) { return log2f(x); }
inline float __log10f(float x) { return log10f(x); }
inline float __sinf(float x) { return sinf(x); }
inline float __cosf(float x) { return cosf(x); }
inline float __tanf(float x) { return tanf(x); }
inline float __powf(float x, float y) { return powf(x, y); }
inline float __saturatef(float x) { return x != x ? 0.0f : (x < 0.0f ? 0.0f : (x > 1.0f ? 1.0f : x)); }
inline float sinpif(float x) { return sinf(3.14159265358979323846f * x); }
inline float cospif(float x) { return cosf(3.14159265358979323846f * x); }
inline double sinpi(double x) { return sin(3.14159265358979323846 * x); }
inline double cospi(double x) { return cos(3.14159265358979323846 * x); }

namespace gpuconv_emu {
// Float -> integer conversions saturate, NaN -> 0, as cvt.*.sat does on the GPU.
template <class I, class F>
inline I sat_cast(F r) {
    if (r != r) return 0;
    if (r <= static_cast<F>(std::numeric_limits<I>::min())) return std::numeric_limits<I>::min();
    if (r >= static_cast<F>(std::numeric_limits<I>::max())) return std::numeric_limits<I>::max();
    return static_cast<I>(r);
}
}  // namespace gpuconv_emu
#define GPUCONV_EMU_CVT(NAME, I, F)                                                     \
    inline I NAME##_rn(F x) { return gpuconv_emu::sat_cast<I>(nearbyint(x)); }         \
    inline I NAME##_rz(F x) { return gpuconv_emu::sat_cast<I>(trunc(x)); }             \
    inline I NAME##_rd(F x) { return gpuconv_emu::sat_cast<I>(floor(x)); }             \
    inline I NAME##_ru(F x) { return gpuconv_emu::sat_cast<I>(ceil(x)); }
GPUCONV_EMU_CVT(__float2int, int, float)
GPUCONV_EMU_CVT(__float2uint, unsigned int, float)
GPUCONV_EMU_CVT(__float2ll, long long, float)
GPUCONV_EMU_CVT(__float2ull, unsigned long long, float)
GPUCONV_EMU_CVT(__double2int, int, double)
GPUCONV_EMU_CVT(__double2uint, unsigned int, double)
GPUCONV_EMU_CVT(__double2ll, long long, double)
GPUCONV_EMU_CVT(__double2ull, unsigned long long, double)
#undef GPUCONV_EMU_CVT
inline float __int2float_rn(int x) { return static_cast<float>(x); }
inline float __uint2float_rn(unsigned x) { return static_cast<float>(x); }
inline float __ll2float_rn(long long x) { return static_cast<float>(x); }
inline double __int2double_rn(int x) { return static_cast<double>(x); }
inline double __ll2double_rn(long long x) { return static_cast<double>(x); }
inline float __double2float_rn(double x) { return static_cast<float>(x); }

namespace gpuconv_emu {
template <class To, class From>
inline To bit_cast(From v) {
    static_assert(sizeof(To) == sizeof(From), "bit_cast between different sizes");
    To t;
    memcpy(&t, &v, sizeof t);
    return t;
}
}  // namespace gpuconv_emu
inline float __int_as_float(int x) { return gpuconv_emu::bit_cast<float>(x); }
inline int __float_as_int(float x) { return gpuconv_emu::bit_cast<int>(x); }
inline float __uint_as_float(unsigned x) { return gpuconv_emu::bit_cast<float>(x); }
inline unsigned __float_as_uint(float x) { return gpuconv_emu::bit_cast<unsigned>(x); }
inline double __longlong_as_double(long long x) { return gpuconv_emu::bit_cast<double>(x); }
inline long long __double_as_longlong(double x) { return gpuconv_emu::bit_cast<long long>(x); }
inline int __double2hiint(double x) {
    return static_cast<int>(gpuconv_emu::bit_cast<unsigned long long>(x) >> 32);
}
inline int __double2loint(double x) {
    return static_cast<int>(gpuconv_emu::bit_cast<unsigned long long>(x) & 0xFFFFFFFFull);
}
inline double __hiloint2double(int hi, int lo) {
    return gpuconv_emu::bit_cast<double>(
        (static_cast<unsigned long long>(static_cast<unsigned>(hi)) << 32) |
        static_cast<unsigned>(lo));
}

inline int __popc(unsigned x) { return __builtin_popcount(x); }
inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
inline int __clz(int x) { return x ? __builtin_clz(static_cast<unsigned>(x)) : 32; }
inline int __clzll(long long x) {
    return x ? __builtin_clzll(static_cast<unsigned long long>(x)) : 64;
}
inline int __ffs(int x) { return __builtin_ffs(x); }
inline int __ffsll(long long x) { return __builtin_ffsll(x); }
inline unsigned __brev(unsigned x) {
    unsigned r = 0;
    for (int i = 0; i < 32; ++i) r |= ((x >> i) & 1u) << (31 - i);
    return r;
}
inline unsigned long long __brevll(unsigned long long x) {
    unsigned long long r = 0;
    for (int i = 0; i < 64; ++i) r |= ((x >> i) & 1ull) << (63 - i);
    return r;
}
inline int __mul24(int a, int b) {
    return static_cast<int>(static_cast<long long>((a << 8) >> 8) * ((b << 8) >> 8));
}
inline unsigned __umul24(unsigned a, unsigned b) { return (a & 0xFFFFFFu) * (b & 0xFFFFFFu); }
inline int __mulhi(int a, int b) {
    return static_cast<int>((static_cast<long long>(a) * b) >> 32);
}
inline unsigned __umulhi(unsigned a, unsigned b) {
    return static_cast<unsigned>((static_cast<unsigned long long>(a) * b) >> 32);
}
inline long long __mul64hi(long long a, long long b) {
    return static_cast<long long>((static_cast<__int128>(a) * b) >> 64);
}
inline unsigned long long __umul64hi(unsigned long long a, unsigned long long b) {
    return static_cast<unsigned long long>((static_cast<unsigned __int128>(a) * b) >> 64);
}

// A trap ends the process, as it ends the GPU context.
[[noreturn]] inline void __trap() {
    fprintf(stderr, "gpuconv emulator: __trap() called\n");
    abort();
}

// ---------------------------------------------------------------------------------
// The runner: a host process for a sanitized kernel library (ASan must be loaded
// first, which a ctypes load into a plain Python cannot do). Built from this header
// with -DGPUCONV_EMU_RUNNER_MAIN; protocol in gpuconv/_emulate.py.
#ifdef GPUCONV_EMU_RUNNER_MAIN
#include <dlfcn.h>
#include <errno.h>

namespace gpuconv_emu_runner {

int g_in = 0;
int g_out = 1;

bool read_all(void* buf, size_t n) {
    char* p = static_cast<char*>(buf);
    while (n) {
        ssize_t r = read(g_in, p, n);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return false;
        p += r;
        n -= static_cast<size_t>(r);
    }
    return true;
}

bool write_all(const void* buf, size_t n) {
    const char* p = static_cast<const char*>(buf);
    while (n) {
        ssize_t r = write(g_out, p, n);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return false;
        p += r;
        n -= static_cast<size_t>(r);
    }
    return true;
}

template <class T>
bool rd(T& v) { return read_all(&v, sizeof v); }
template <class T>
bool wr(const T& v) { return write_all(&v, sizeof v); }

bool wr_str(const char* s) {
    const uint32_t n = static_cast<uint32_t>(strlen(s));
    return wr(n) && write_all(s, n);
}

}  // namespace gpuconv_emu_runner

int main(int argc, char** argv) {
    using namespace gpuconv_emu_runner;
    if (argc != 2) {
        fprintf(stderr, "usage: %s KERNEL_LIBRARY.so\n", argv[0]);
        return 2;
    }
    // The protocol uses the original stdout; a kernel's printf goes to stderr.
    g_out = dup(1);
    dup2(2, 1);
    void* h = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        fprintf(stderr, "gpuconv emulator: cannot load %s: %s\n", argv[1], dlerror());
        return 3;
    }
    auto count = reinterpret_cast<int (*)()>(dlsym(h, "gpuconv_emu_kernel_count"));
    auto name = reinterpret_cast<const char* (*)(int)>(dlsym(h, "gpuconv_emu_kernel_name"));
    auto sig = reinterpret_cast<const char* (*)(int)>(dlsym(h, "gpuconv_emu_kernel_signature"));
    auto launch = reinterpret_cast<int (*)(int, const unsigned*, const unsigned*,
                                           unsigned long long, void**, unsigned)>(
        dlsym(h, "gpuconv_emu_launch"));
    auto last_error = reinterpret_cast<const char* (*)()>(dlsym(h, "gpuconv_emu_last_error"));
    auto abi = reinterpret_cast<int (*)()>(dlsym(h, "gpuconv_emu_abi_version"));
    if (!count || !name || !sig || !launch || !last_error || !abi ||
        abi() != GPUCONV_EMU_ABI_VERSION) {
        fprintf(stderr, "gpuconv emulator: %s is not a kernel library of this version\n",
                argv[1]);
        return 3;
    }
    // Handshake: magic, kernel count, then each name and signature.
    const uint32_t magic = 0x554d4547;  // "GEMU"
    const int n = count();
    wr(magic);
    wr(static_cast<uint32_t>(n));
    for (int i = 0; i < n; ++i) {
        wr_str(name(i));
        wr_str(sig(i));
    }
    for (;;) {
        uint32_t m;
        if (!rd(m)) return 0;  // EOF: done
        if (m != magic) {
            fprintf(stderr, "gpuconv emulator: protocol error\n");
            return 4;
        }
        uint32_t kernel, grid[3], block[3], flags, nregions, nargs;
        uint64_t shmem;
        if (!rd(kernel) || !read_all(grid, sizeof grid) || !read_all(block, sizeof block) ||
            !rd(shmem) || !rd(flags) || !rd(nregions) || !rd(nargs))
            return 4;
        // Request: region table, argument descriptors, then the regions' bytes.
        // Regions: each a heap block of exactly its size (ASan redzones around it).
        struct Region { uint64_t size; uint8_t copyback; char* ptr; };
        Region* regions = static_cast<Region*>(calloc(nregions + 1, sizeof(Region)));
        for (uint32_t r = 0; r < nregions; ++r) {
            if (!rd(regions[r].size) || !rd(regions[r].copyback)) return 4;
            void* p = nullptr;
            if (posix_memalign(&p, 256, regions[r].size ? regions[r].size : 1) != 0) {
                fprintf(stderr, "gpuconv emulator: out of memory (%llu bytes)\n",
                        static_cast<unsigned long long>(regions[r].size));
                return 5;
            }
            regions[r].ptr = static_cast<char*>(p);
        }
        // Arguments: kind 0 null pointer, 1 pointer into a region, 2 scalar bytes.
        void** args = static_cast<void**>(calloc(nargs + 1, sizeof(void*)));
        void** ptrs = static_cast<void**>(calloc(nargs + 1, sizeof(void*)));
        for (uint32_t a = 0; a < nargs; ++a) {
            uint8_t kind;
            if (!rd(kind)) return 4;
            if (kind == 0) {
                ptrs[a] = nullptr;
                args[a] = &ptrs[a];
            } else if (kind == 1) {
                uint32_t r;
                uint64_t off;
                if (!rd(r) || !rd(off) || r >= nregions) return 4;
                ptrs[a] = regions[r].ptr + off;
                args[a] = &ptrs[a];
            } else {
                uint32_t size;
                if (!rd(size)) return 4;
                void* p = nullptr;
                if (posix_memalign(&p, 16, size ? size : 1) != 0) return 5;
                if (!read_all(p, size)) return 4;
                args[a] = p;
            }
        }
        for (uint32_t r = 0; r < nregions; ++r) {
            if (!read_all(regions[r].ptr, regions[r].size)) return 4;
#if GPUCONV_EMU_ASAN
            if (!regions[r].size) __asan_poison_memory_region(regions[r].ptr, 1);
#endif
        }
        const int rc = launch(static_cast<int>(kernel), grid, block, shmem, args, flags);
        fflush(stdout);
        fflush(stderr);
        const int32_t status = rc;
        wr(status);
        wr_str(rc == 0 ? "" : last_error());
        for (uint32_t r = 0; r < nregions; ++r) {
            if (rc == 0 && regions[r].copyback) write_all(regions[r].ptr, regions[r].size);
#if GPUCONV_EMU_ASAN
            if (!regions[r].size) __asan_unpoison_memory_region(regions[r].ptr, 1);
#endif
            free(regions[r].ptr);
        }
        for (uint32_t a = 0; a < nargs; ++a)
            if (args[a] != &ptrs[a]) free(args[a]);
        free(args);
        free(ptrs);
        free(regions);
    }
}
#endif  // GPUCONV_EMU_RUNNER_MAIN

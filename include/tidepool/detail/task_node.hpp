#pragma once
// The unit the scheduler moves around: one submitted callable, type-erased, with room for its
// result, its exception and its completion state.
//
// Lifetime, and the "no retention" rule:
//   1. `make_task_node` takes a node from the calling thread's cache (no malloc once warm) and
//      constructs the callable in it: inline if it fits, else on the heap.
//   2. A worker runs it. Running destroys the callable, and with it everything it captured,
//      before the result is stored and long before completion is published (`finish`).
//   3. The node is reference counted: one reference for the scheduler, one for the task<T> handle
//      if there is one. The last release destroys the result, clears the exception and returns
//      the node to a cache, empty: a cached node refers to nothing.
// Queues hold nodes only between submission and the start of the run, and clear their slot when
// they hand one out.

#include <atomic>       // for std::atomic
#include <cstddef>      // for std::byte, std::size_t, offsetof
#include <cstdint>      // for std::uint32_t, std::uint8_t
#include <exception>    // for std::exception_ptr, std::current_exception
#include <functional>   // for std::invoke
#include <new>          // for std::launder, placement new
#include <type_traits>  // for std::is_void_v, std::is_nothrow_destructible_v
#include <utility>      // for std::forward, std::move

#include "tidepool/detail/cache_line.hpp"

namespace tidepool::detail {

enum class task_op : std::uint8_t {
  run,             // invoke, destroy the callable, store the result or the exception
  cancel,          // destroy the callable without invoking it
  destroy_result,  // destroy a stored result
};

enum class task_kind : std::uint8_t {
  with_handle,       // submit(): a task<T> handle waits for the outcome
  fire_and_forget,   // go(): exceptions go to the pool's handler (or to the group's wait)
  fork_join_job,     // parallel_invoke's spawned half: lives on the spawner's stack, not counted
  subpool_runner,    // runs one task of a subpool; internal, not counted
};

// The outcome, in the low bits of `task_node::state`; `waiter_bit` is set by a thread that is
// about to block on it, so the finishing worker knows whether to make the wake-up system call.
enum task_outcome : std::uint32_t {
  outcome_pending = 0,
  outcome_succeeded = 1,
  outcome_failed = 2,
  outcome_cancelled = 3,
};
inline constexpr std::uint32_t outcome_mask = 3;
inline constexpr std::uint32_t waiter_bit = 4;
// Set by whoever starts a task that has a handle: the worker that took it from a queue, or a
// worker waiting for it that runs it itself (waiting.cpp). Exactly one of them runs it; the other
// only drops its reference. Kept when the outcome is published, since a queue may still hand
// the node out after a waiter ran it.
inline constexpr std::uint32_t claimed_bit = 8;

struct task_node;
class task_group_state;
class subpool_core;
class pool_core;
using task_ops_fn = void (*)(task_node*, task_op) noexcept;

// 128 bytes, aligned to 16, not to a cache line: a cache-line-aligned node comes from glibc's
// memalign, which spent 265 bytes of RSS per queued task against 153 unaligned (perf/bench_memory
// `queued`), and the aligned node measured no faster (perf/bench_server, bench_forkjoin).
struct task_node {
  static constexpr std::size_t size = 2 * cache_line_size;
  // 8, not 16: the header is 56 bytes, and a callable that needs 16-byte alignment (rare) is
  // simply stored on the heap.
  static constexpr std::size_t storage_align = 8;

  task_ops_fn ops = nullptr;
  std::atomic<std::uint32_t> state{outcome_pending};
  std::atomic<std::uint32_t> refs{0};
  std::exception_ptr error;
  task_group_state* group = nullptr;  // the task_group it belongs to, if any
  subpool_core* sub = nullptr;        // the subpool it was submitted to, if any
  pool_core* pool = nullptr;          // the pool it was submitted to directly (not via a subpool)
  task_kind kind = task_kind::fire_and_forget;
  bool has_result = false;  // a non-void result was stored and is not destroyed yet
  // When a sampled task was submitted: steady_clock nanoseconds modulo 2^48 (0: not sampled).
  // 48 bits fit the header's padding and wrap after 78 hours, far beyond any queue wait.
  std::uint16_t submit_time_high = 0;
  std::uint32_t submit_time_low = 0;

  static constexpr std::size_t header_size = 56;  // all used
  static constexpr std::size_t storage_size = size - header_size;
  alignas(storage_align) std::byte storage[storage_size];

  [[nodiscard]] std::uint32_t outcome() const noexcept { return state.load(std::memory_order_acquire) & outcome_mask; }

  // True for exactly one caller. acq_rel: the loser's later release of the node is ordered after
  // the winner's claim, and the winner sees the node as its submitter built it.
  [[nodiscard]] bool try_claim() noexcept {
    return (state.fetch_or(claimed_bit, std::memory_order_acq_rel) & claimed_bit) == 0;
  }

  static constexpr std::uint64_t submit_time_mask = (std::uint64_t{1} << 48) - 1;
  void set_submit_time(std::uint64_t ns) noexcept {
    const std::uint64_t stamp = (ns & submit_time_mask) == 0 ? 1 : ns & submit_time_mask;
    submit_time_high = static_cast<std::uint16_t>(stamp >> 32);
    submit_time_low = static_cast<std::uint32_t>(stamp);
  }
  [[nodiscard]] std::uint64_t submit_time() const noexcept {
    return (std::uint64_t{submit_time_high} << 32) | submit_time_low;
  }
};
static_assert(sizeof(task_node) == task_node::size, "a task node is 128 bytes");
static_assert(offsetof(task_node, storage) == task_node::header_size);

// Node allocation through per-thread caches (lib/task_node.cpp).
[[nodiscard]] task_node* allocate_task_node();
void free_task_node(task_node* node) noexcept;

// Drops one reference; the last one destroys the result, clears the exception and caches the node.
void release_task_node(task_node* node) noexcept;

// A node that was never accepted: destroys its callable and frees it, whatever its references.
void discard_task_node(task_node* node) noexcept;

// Where a value of type V lives in a node: inside `storage` if it fits, else on the heap with a
// pointer to it in `storage`.
template <class V>
inline constexpr bool stored_inline = sizeof(V) <= task_node::storage_size && alignof(V) <= task_node::storage_align;

template <class V>
V& stored(task_node* n) noexcept {
  if constexpr (stored_inline<V>) {
    return *std::launder(reinterpret_cast<V*>(n->storage));
  } else {
    return **std::launder(reinterpret_cast<V**>(n->storage));
  }
}

template <class V, class... Args>
void construct_stored(task_node* n, Args&&... args) {
  if constexpr (stored_inline<V>) {
    ::new (static_cast<void*>(n->storage)) V(std::forward<Args>(args)...);
  } else {
    ::new (static_cast<void*>(n->storage)) V*(new V(std::forward<Args>(args)...));
  }
}

template <class V>
void destroy_stored(task_node* n) noexcept {
  if constexpr (stored_inline<V>) {
    stored<V>(n).~V();
  } else {
    delete &stored<V>(n);
  }
}

// The type-erased operations of a node holding callable F whose result is R (void: discarded).
template <class F, class R>
void task_ops(task_node* n, task_op op) noexcept {
  switch (op) {
    case task_op::run: {
      bool callable_alive = true;
      try {
        if constexpr (std::is_void_v<R>) {
          static_cast<void>(std::invoke(std::move(stored<F>(n))));
          callable_alive = false;
          destroy_stored<F>(n);
        } else {
          R result = std::invoke(std::move(stored<F>(n)));
          callable_alive = false;
          destroy_stored<F>(n);  // captures die before the result is published
          construct_stored<R>(n, std::move(result));
          n->has_result = true;
        }
      } catch (...) {
        if (callable_alive) destroy_stored<F>(n);
        n->error = std::current_exception();
      }
      return;
    }
    case task_op::cancel:
      destroy_stored<F>(n);
      return;
    case task_op::destroy_result:
      if constexpr (!std::is_void_v<R>) destroy_stored<R>(n);
      return;
  }
}

// A node holding `f`, with one reference for the scheduler and one for the handle if `kind` has one.
template <class F, class R, class Fn>
[[nodiscard]] task_node* make_task_node(Fn&& f, task_kind kind) {
  // Destroying a callable or a result happens where nobody could be told about an exception
  // (destroy_stored is noexcept: after the run, on refusal, on cancellation), so a type whose
  // destructor may throw is refused here rather than ending the process later.
  static_assert(std::is_nothrow_destructible_v<F>,
                "tidepool: a task's callable and everything it captures must have a noexcept destructor");
  static_assert(std::is_void_v<R> || std::is_nothrow_destructible_v<R>,
                "tidepool: a task's result type must have a noexcept destructor");
  task_node* n = allocate_task_node();
  try {
    construct_stored<F>(n, std::forward<Fn>(f));
  } catch (...) {
    free_task_node(n);
    throw;
  }
  n->ops = &task_ops<F, R>;
  n->kind = kind;
  n->group = nullptr;
  n->sub = nullptr;
  n->pool = nullptr;
  n->submit_time_high = 0;
  n->submit_time_low = 0;
  n->refs.store(kind == task_kind::with_handle ? 2 : 1, std::memory_order_relaxed);
  return n;
}

}  // namespace tidepool::detail

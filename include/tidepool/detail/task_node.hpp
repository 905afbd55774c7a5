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
//
// Options (submit_options: deadline, stop token) and the stop source of a callable that takes a
// std::stop_token live in a side allocation, task_extras, that the node owns; a node without
// them pays nothing for them, not even a byte of its size.

#include <algorithm>    // for std::max
#include <atomic>       // for std::atomic
#include <chrono>       // for std::chrono::steady_clock
#include <cstddef>      // for std::byte, std::size_t
#include <cstdint>      // for std::uint16_t, std::uint32_t, std::uint64_t, std::uint8_t
#include <cstring>      // for std::memcpy, std::memset
#include <exception>    // for std::exception_ptr, std::current_exception
#include <functional>   // for std::invoke
#include <new>          // for std::launder, placement new
#include <optional>     // for std::optional
#include <stop_token>   // for std::stop_token, std::stop_source, std::stop_callback
#include <type_traits>  // for std::is_void_v, std::is_nothrow_destructible_v, std::invoke_result
#include <utility>      // for std::forward, std::move

#include "tidepool/detail/task_owner.hpp"
#include "tidepool/priority.hpp"
#include "tidepool/submit_options.hpp"

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
  internal_job,      // runs one task of a subpool, or resumes a coroutine; never counted or refused
  embedded_job,      // as internal_job, but lives in memory its run op owns (a coroutine frame):
                     // the worker runs the op and never touches the node again (no release)
};

// The outcome, in the low bits of `task_node::state`; `waiter_bit` is set by a thread that is
// about to block on it, so the finishing worker knows whether to make the wake-up system call.
enum task_outcome : std::uint32_t {
  outcome_pending = 0,
  outcome_succeeded = 1,
  outcome_failed = 2,
  outcome_cancelled = 3,
  outcome_expired = 4,  // skipped: still waiting at its deadline (submit_options)
};
inline constexpr std::uint32_t outcome_mask = 7;
inline constexpr std::uint32_t waiter_bit = 8;
// Set by whoever starts a task that has a handle: the worker that took it from a queue, or a
// worker waiting for it that runs it itself (waiting.cpp). Exactly one of them runs it; the other
// only drops its reference. Kept when the outcome is published, since a queue may still hand
// the node out after a waiter ran it.
inline constexpr std::uint32_t claimed_bit = 16;
// The node owns a task_extras (see below). Set before the node is published and kept until its
// last release, so that any holder may read it (the flags may be written by the runner meanwhile).
inline constexpr std::uint32_t extras_bit = 32;
// A delayed task (submit_after / submit_at) still in its pool's timer queue: set before the timer
// queue has it, cleared by the timer thread just before the task enters a queue (and set again
// if it could not). Nobody may run it early (run_if_unstarted), and cancel() goes through the
// timer queue for it (timer_queue::cancel_delayed).
inline constexpr std::uint32_t delayed_bit = 64;
// Someone waits for the outcome without blocking (add_continuation, task_completion.hpp): whoever
// publishes the outcome runs the continuations registered for the node.
inline constexpr std::uint32_t continuation_bit = 128;

struct task_node;
using task_ops_fn = void (*)(task_node*, task_op) noexcept;

// Nodes come in three sizes, so that a queued task costs little when its callable is small (the
// common case for go(): a lambda capturing a pointer or two fits the 48-byte node). A callable,
// or a result, that fits none is stored on the heap, with a pointer to it in the node.
enum class node_size : std::uint8_t { tiny = 0, small = 1, large = 2 };
inline constexpr std::size_t node_size_count = 3;
inline constexpr std::size_t node_bytes(node_size s) noexcept {
  constexpr std::size_t bytes[node_size_count] = {48, 64, 128};
  return bytes[static_cast<std::size_t>(s)];
}

// Bits of `task_node::flags`, written only by the thread that owns the node at the time (the
// submitter, then the runner) and read after an acquire of `state` or `refs`.
inline constexpr std::uint8_t flags_size_mask = 3;  // the node_size
inline constexpr std::uint8_t flag_has_result = 4;  // the storage holds the result (destroy_result)
inline constexpr std::uint8_t flag_has_error = 8;   // the storage holds an std::exception_ptr
// Two bits: the tidepool::priority, stored as its distance above `normal` modulo 3, so that the
// zero bits of a fresh node (and of internal jobs, which never set them) mean `normal`.
inline constexpr std::uint8_t flags_priority_shift = 4;
inline constexpr std::uint8_t flags_priority_mask = 3 << flags_priority_shift;
inline constexpr std::uint8_t flag_priority_given = 64;  // by submit_options, not a subpool's default
// The run op only starts the task, which someone finishes later (complete_deferred,
// task_completion.hpp): a spawned coroutine.
inline constexpr std::uint8_t flag_completes_later = 128;

// What a task with options, or one whose callable takes a std::stop_token, keeps beside its
// node (allocated at submission, freed at the node's last release). Its address takes the place
// of the submission time stamp in the node's storage, and the stamp moves in here.
struct task_extras {
  using clock = std::chrono::steady_clock;
  // Requests stop on the task's own source when a linked token (the options', the group's) is.
  struct forward_stop {
    std::stop_source* to;
    void operator()() const noexcept { to->request_stop(); }
  };

  std::uint64_t submit_time = 0;  // as in the node's slot: 0 if not sampled
  clock::time_point deadline = clock::time_point::max();
  // For a callable that takes a std::stop_token: the source of the token it receives. cancel()
  // requests stop on it, and so do the linked tokens, through `links`. Empty otherwise.
  std::stop_source own{std::nostopstate};
  std::optional<std::stop_callback<forward_stop>> links[2];
  // For a callable that takes no token: the options' token, checked before the start.
  std::stop_token given;

  // Whether the task is to be skipped, checked just before it would start: outcome_cancelled
  // (a stop was requested), outcome_expired (its deadline passed), or outcome_pending (run it).
  [[nodiscard]] std::uint32_t skip_outcome() const noexcept {
    if (own.stop_possible() ? own.stop_requested() : given.stop_requested()) return outcome_cancelled;
    if (deadline != clock::time_point::max() && clock::now() >= deadline) return outcome_expired;
    return outcome_pending;
  }
  // At the task's finish (run or skipped): it no longer listens to the outside tokens, and the
  // stop states of others are not kept alive by a handle nobody released yet.
  void let_go() noexcept {
    for (auto& link : links) link.reset();
    given = std::stop_token();
  }
};

// The 24-byte header; the storage for the callable follows it (see task_node_storage). Once the
// callable is destroyed, the same storage holds the result or the exception. The last 8 bytes of
// the storage hold the submission time of a sampled task (0: not sampled), or, in a node with
// extras, the address of its task_extras; the callable and the result never reach them
// (stored_inline).
struct task_node {
  static constexpr std::size_t header_size = 24;
  static constexpr std::size_t storage_align = 8;  // a callable needing more goes to the heap

  task_ops_fn ops = nullptr;
  std::atomic<std::uint32_t> state{outcome_pending};
  std::atomic<std::uint16_t> refs{0};
  task_kind kind = task_kind::fire_and_forget;
  std::uint8_t flags = 0;
  // Told when the task is skipped, starts, ends and is released: its group, its subpool, or (for a
  // task submitted straight to a pool) the pool's own owner. Null for internal jobs.
  task_owner* owner = nullptr;

  [[nodiscard]] node_size size_class() const noexcept { return static_cast<node_size>(flags & flags_size_mask); }
  [[nodiscard]] std::size_t storage_size() const noexcept { return node_bytes(size_class()) - header_size; }
  [[nodiscard]] tidepool::priority priority() const noexcept {
    // A table, not arithmetic modulo 3: this is read for every task started and submitted.
    constexpr tidepool::priority by_bits[4] = {priority::normal, priority::high, priority::low, priority::normal};
    return by_bits[(flags & flags_priority_mask) >> flags_priority_shift];
  }
  [[nodiscard]] bool normal_priority() const noexcept { return (flags & flags_priority_mask) == 0; }
  void set_priority(tidepool::priority p) noexcept {
    const unsigned above_normal = (static_cast<unsigned>(p) + priority_levels - static_cast<unsigned>(priority::normal)) % priority_levels;
    flags = static_cast<std::uint8_t>((flags & ~flags_priority_mask) | (above_normal << flags_priority_shift));
  }
  // The storage starts right after the header, in the same allocation (task_node_storage).
  [[nodiscard]] std::byte* storage() noexcept { return reinterpret_cast<std::byte*>(this) + header_size; }

  [[nodiscard]] std::uint32_t outcome() const noexcept { return state.load(std::memory_order_acquire) & outcome_mask; }

  // True for exactly one caller. acq_rel: the loser's later release of the node is ordered after
  // the winner's claim, and the winner sees the node as its submitter built it.
  [[nodiscard]] bool try_claim() noexcept { return (claim() & claimed_bit) == 0; }
  // The same, returning the state before: the caller won if it had no claimed_bit, and sees the
  // other bits as they were at that moment (cancel() needs delayed_bit).
  [[nodiscard]] std::uint32_t claim() noexcept { return state.fetch_or(claimed_bit, std::memory_order_acq_rel); }

  // Where a sampled task keeps its submission time: the storage's last 8 bytes, or its extras.
  [[nodiscard]] std::byte* submit_time_slot() noexcept { return storage() + storage_size() - sizeof(std::uint64_t); }
  void set_submit_time(std::uint64_t ns) noexcept {
    const std::uint64_t stamp = ns == 0 ? 1 : ns;
    if (has_extras()) {
      extras()->submit_time = stamp;
    } else {
      std::memcpy(submit_time_slot(), &stamp, sizeof stamp);
    }
  }
  void clear_submit_time() noexcept { std::memset(submit_time_slot(), 0, sizeof(std::uint64_t)); }
  [[nodiscard]] std::uint64_t submit_time() noexcept {
    if (has_extras()) return extras()->submit_time;
    std::uint64_t stamp = 0;
    std::memcpy(&stamp, submit_time_slot(), sizeof stamp);
    return stamp;
  }

  // relaxed: the bit is set before the node is published, and cleared only by its last release.
  [[nodiscard]] bool has_extras() const noexcept { return (state.load(std::memory_order_relaxed) & extras_bit) != 0; }
  [[nodiscard]] task_extras* extras() noexcept {
    task_extras* x = nullptr;
    std::memcpy(&x, submit_time_slot(), sizeof x);
    return x;
  }

  // The exception a run stored, kept in the storage (the callable is gone by then).
  [[nodiscard]] bool has_error() const noexcept { return (flags & flag_has_error) != 0; }
  void store_error(std::exception_ptr error) noexcept {
    ::new (static_cast<void*>(storage())) std::exception_ptr(std::move(error));
    flags |= flag_has_error;
  }
  [[nodiscard]] std::exception_ptr& error() noexcept { return *std::launder(reinterpret_cast<std::exception_ptr*>(storage())); }
  [[nodiscard]] std::exception_ptr take_error() noexcept {
    std::exception_ptr error = std::move(this->error());
    this->error().~exception_ptr();
    flags &= static_cast<std::uint8_t>(~flag_has_error);
    return error;
  }
};
static_assert(sizeof(task_node) == task_node::header_size, "the header is 24 bytes");

// A node of `Bytes` bytes in all: the header, then the storage.
template <std::size_t Bytes>
struct task_node_storage : task_node {
  alignas(task_node::storage_align) std::byte bytes[Bytes - task_node::header_size];
};
static_assert(sizeof(task_node_storage<64>) == 64 && sizeof(task_node_storage<128>) == 128);

// Node allocation through per-thread caches (lib/task_node.cpp). The node's header is fresh.
[[nodiscard]] task_node* allocate_task_node(node_size size);
void free_task_node(task_node* node) noexcept;

// Drops one reference; the last one destroys the result or exception and caches the node.
void release_task_node(task_node* node) noexcept;

// Gives `node` its task_extras, built from `options` (may be null); `own_token`: the callable
// takes a std::stop_token, which `also_stopped_by` (may be null: a group's token) also stops.
// Throws std::bad_alloc, leaving the node as it was.
void attach_task_extras(task_node* node, const submit_options* options, bool own_token,
                        const std::stop_token* also_stopped_by);

// A node that was never accepted: destroys its callable and frees it, whatever its references.
void discard_task_node(task_node* node) noexcept;

// What a value of type V occupies in a node's storage: itself if it fits (leaving the time
// stamp's 8 bytes), or a pointer to it on the heap.
template <class V>
inline constexpr bool fits(node_size s) noexcept {
  return sizeof(V) + sizeof(std::uint64_t) <= node_bytes(s) - task_node::header_size && alignof(V) <= task_node::storage_align;
}
template <class V>
[[nodiscard]] bool stored_inline(const task_node* n) noexcept {
  return fits<V>(n->size_class());
}

// The smallest node V fits in; tiny if none (V goes to the heap).
template <class V>
inline constexpr node_size smallest_fit = fits<V>(node_size::tiny)    ? node_size::tiny
                                          : fits<V>(node_size::small) ? node_size::small
                                          : fits<V>(node_size::large) ? node_size::large
                                                                      : node_size::tiny;
// The node for callable F with result R: the smallest both fit (the result replaces the callable).
template <class F, class R>
inline constexpr node_size node_size_for = [] {
  if constexpr (std::is_void_v<R>) {
    return smallest_fit<F>;
  } else {
    return std::max(smallest_fit<F>, smallest_fit<R>);
  }
}();

template <class V>
V& stored(task_node* n) noexcept {
  if (stored_inline<V>(n)) return *std::launder(reinterpret_cast<V*>(n->storage()));
  return **std::launder(reinterpret_cast<V**>(n->storage()));
}

template <class V, class... Args>
void construct_stored(task_node* n, Args&&... args) {
  if (stored_inline<V>(n)) {
    ::new (static_cast<void*>(n->storage())) V(std::forward<Args>(args)...);
  } else {
    ::new (static_cast<void*>(n->storage())) V*(new V(std::forward<Args>(args)...));
  }
}

template <class V>
void destroy_stored(task_node* n) noexcept {
  if (stored_inline<V>(n)) {
    stored<V>(n).~V();
  } else {
    delete &stored<V>(n);
  }
}

// A callable that can take a std::stop_token gets one (the task's own: see task_extras), as in
// task_group; its result type is what that call returns.
template <class F>
inline constexpr bool takes_stop_token = std::is_invocable_v<F, std::stop_token>;

template <class F>
using task_result_t = typename std::conditional_t<takes_stop_token<std::decay_t<F>>,
                                                  std::invoke_result<std::decay_t<F>, std::stop_token>,
                                                  std::invoke_result<std::decay_t<F>>>::type;

template <class F>
decltype(auto) invoke_task(F& f, task_node* n) {
  if constexpr (takes_stop_token<F>) {
    // No extras: nothing could ever stop the task (see make_task_node), and its token says so.
    return std::invoke(std::move(f), n->has_extras() ? n->extras()->own.get_token() : std::stop_token());
  } else {
    return std::invoke(std::move(f));
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
          static_cast<void>(invoke_task(stored<F>(n), n));
          callable_alive = false;
          destroy_stored<F>(n);
        } else {
          R result = invoke_task(stored<F>(n), n);
          callable_alive = false;
          destroy_stored<F>(n);  // captures die before the result is published
          construct_stored<R>(n, std::move(result));
          n->flags |= flag_has_result;
        }
      } catch (...) {
        if (callable_alive) destroy_stored<F>(n);
        n->store_error(std::current_exception());
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

// A node holding `state`, of the size for a stored S and a result R, run by `ops`: one reference
// for the scheduler and one for the handle if `kind` has one. For nodes whose run is not "call
// the callable" (a spawned coroutine); make_task_node builds every other node on it.
template <class S, class R, class St>
[[nodiscard]] task_node* make_node_with_ops(St&& state, task_ops_fn ops, task_kind kind) {
  // Destroying a callable or a result happens where nobody could be told about an exception
  // (destroy_stored is noexcept: after the run, on refusal, on cancellation), so a type whose
  // destructor may throw is refused here rather than ending the process later.
  static_assert(std::is_nothrow_destructible_v<S>,
                "tidepool: a task's callable and everything it captures must have a noexcept destructor");
  static_assert(std::is_void_v<R> || std::is_nothrow_destructible_v<R>,
                "tidepool: a task's result type must have a noexcept destructor");
  task_node* n = allocate_task_node(node_size_for<S, R>);
  try {
    construct_stored<S>(n, std::forward<St>(state));
  } catch (...) {
    free_task_node(n);
    throw;
  }
  n->ops = ops;
  n->kind = kind;
  // Only the size is kept from the node's last use: we write this line anyway.
  n->flags = static_cast<std::uint8_t>(n->flags & flags_size_mask);
  n->owner = nullptr;
  n->clear_submit_time();
  n->refs.store(kind == task_kind::with_handle ? 2 : 1, std::memory_order_relaxed);
  return n;
}

// A node holding `f`. `options`: the task's submit_options, if any; `also_stopped_by`: a token
// that also stops the task's own token (a group's), for a callable that takes one. Without
// either, and for a callable that takes no token, the node is all there is (options == nullptr
// folds the extras away).
template <class F, class R, class Fn>
[[nodiscard]] task_node* make_task_node(Fn&& f, task_kind kind, const submit_options* options = nullptr,
                                        const std::stop_token* also_stopped_by = nullptr) {
  task_node* n = make_node_with_ops<F, R>(std::forward<Fn>(f), &task_ops<F, R>, kind);
  if (options != nullptr) {
    n->set_priority(options->priority);
    n->flags |= flag_priority_given;
  }
  // A stop source only where something can request stop: the handle's cancel(), or a linked token.
  const bool own_token = takes_stop_token<F> && (kind == task_kind::with_handle || also_stopped_by != nullptr ||
                                                 (options != nullptr && options->stop_token.stop_possible()));
  if (own_token || options != nullptr) {
    try {
      attach_task_extras(n, options, own_token, also_stopped_by);
    } catch (...) {
      destroy_stored<F>(n);
      free_task_node(n);
      throw;
    }
  }
  return n;
}

}  // namespace tidepool::detail

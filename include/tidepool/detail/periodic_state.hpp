#pragma once
// The shared state of one periodic timer (go_every): its callable, type-erased on the heap, and
// the flags that decide which tick may start a run, and who destroys the callable.
//
// Held (reference counted) by the timer handle, by the pool's timer queue while the timer is
// scheduled, and by each submitted run until that run's task is destroyed. The callable lives
// only until the timer ends; the block itself lives until the last reference goes.
//
// `state_` (bits running and ended) decides, with read-modify-writes only:
//   * a tick starts a run only if neither running nor ended: it sets running (begin_run);
//   * a run's end clears running; if ended was set meanwhile, the run's end destroys the
//     callable (end_run);
//   * cancel sets ended; if no run was going, it destroys the callable itself.
// So exactly one of cancel and the last run's end destroys it, never while a run uses it, and
// no run starts after a cancel that returned true. acq_rel on every change: the run's use of the
// callable happens-before its destruction on the cancelling thread, and the construction before
// every use.

#include <atomic>       // for std::atomic
#include <cstdint>      // for std::uint32_t
#include <functional>   // for std::invoke
#include <type_traits>  // for std::decay_t, std::is_nothrow_destructible_v
#include <utility>      // for std::forward

namespace tidepool::detail {

class periodic_state {
 public:
  template <class F>
  [[nodiscard]] static periodic_state* make(F&& f) {
    using callable = std::decay_t<F>;
    static_assert(std::is_nothrow_destructible_v<callable>,
                  "tidepool: a timer's callable and everything it captures must have a noexcept destructor");
    auto* held = new callable(std::forward<F>(f));
    try {
      return new periodic_state(held, [](void* c) { std::invoke(*static_cast<callable*>(c)); },
                                [](void* c) noexcept { delete static_cast<callable*>(c); });
    } catch (...) {
      delete held;
      throw;
    }
  }

  periodic_state(const periodic_state&) = delete;
  periodic_state& operator=(const periodic_state&) = delete;

  void add_ref() noexcept { refs_.fetch_add(1, std::memory_order_relaxed); }
  void release() noexcept {
    if (refs_.fetch_sub(1, std::memory_order_acq_rel) == 1) delete this;
  }

  enum class tick { run, skip, ended };
  // A tick: `run` marks a run as going (the caller submits it, and calls end_run when that run's
  // task is destroyed, run or not); `skip`: the previous run is unfinished; `ended`: cancelled.
  [[nodiscard]] tick begin_run() noexcept {
    std::uint32_t s = state_.load(std::memory_order_acquire);
    for (;;) {
      if ((s & ended_bit) != 0) return tick::ended;
      if ((s & running_bit) != 0) return tick::skip;
      if (state_.compare_exchange_weak(s, s | running_bit, std::memory_order_acq_rel, std::memory_order_acquire)) {
        return tick::run;
      }
    }
  }
  // Only between begin_run() == run and end_run(): the callable is alive then.
  void invoke() { invoke_(callable_); }
  void end_run() noexcept {
    const std::uint32_t before = state_.fetch_and(~running_bit, std::memory_order_acq_rel);
    if ((before & ended_bit) != 0) destroy_callable();
  }
  // True if this call ended the timer.
  bool cancel() noexcept {
    std::uint32_t s = state_.load(std::memory_order_acquire);
    do {
      if ((s & ended_bit) != 0) return false;
    } while (!state_.compare_exchange_weak(s, s | ended_bit, std::memory_order_acq_rel, std::memory_order_acquire));
    if ((s & running_bit) == 0) destroy_callable();
    return true;
  }
  [[nodiscard]] bool ended() const noexcept { return (state_.load(std::memory_order_acquire) & ended_bit) != 0; }

 private:
  using invoke_fn = void (*)(void*);
  using destroy_fn = void (*)(void*) noexcept;
  periodic_state(void* callable, invoke_fn invoke, destroy_fn destroy) noexcept
      : callable_(callable), invoke_(invoke), destroy_(destroy) {}
  ~periodic_state() = default;

  void destroy_callable() noexcept {
    destroy_(callable_);
    callable_ = nullptr;
  }

  static constexpr std::uint32_t running_bit = 1;
  static constexpr std::uint32_t ended_bit = 2;

  std::atomic<std::uint32_t> refs_{1};  // the creator's
  std::atomic<std::uint32_t> state_{0};
  void* callable_;
  const invoke_fn invoke_;
  const destroy_fn destroy_;
};

}  // namespace tidepool::detail

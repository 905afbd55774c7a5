#pragma once
// tidepool::timer — the handle of a periodic task started by go_every() on a pool or subpool.
//
//   tidepool::timer heartbeat = pool.go_every(std::chrono::seconds(1), [] { send_heartbeat(); });
//   ...
//   heartbeat.cancel();   // no run starts after this returns true
//
// * Every `period` a run of the callable is submitted to the pool (or subpool) like go(): it
//   queues, counts in metrics as a task and sends its exception to on_unhandled_exception. A tick
//   that finds the previous run unfinished (still queued or running) is skipped, so runs never
//   overlap; a tick that the pool refuses (a full non-blocking queue) is skipped too (counted
//   `dropped`). Ticks keep to the original schedule: a late or skipped tick does not shift the
//   later ones.
// * cancel() returns true if this call ended the timer: no run starts afterwards; a run already
//   going finishes. False if it had already ended: cancelled before, or its pool or subpool
//   stopped (stop() ends every periodic timer of a pool; a subpool's, of that subpool).
// * No retention: the callable and its captures are destroyed when the timer ends (at once, or
//   when a run in progress returns); the handle keeps only a small control block.
// * The destructor does not cancel: a timer whose handle is gone runs until its pool stops.

#include "tidepool/detail/periodic_state.hpp"

namespace tidepool {

namespace detail {
struct timer_access;
}

class timer {
 public:
  timer() noexcept = default;
  timer(timer&& other) noexcept : state_(other.state_) { other.state_ = nullptr; }
  timer& operator=(timer&& other) noexcept {
    if (this != &other) {
      reset();
      state_ = other.state_;
      other.state_ = nullptr;
    }
    return *this;
  }
  timer(const timer&) = delete;
  timer& operator=(const timer&) = delete;
  ~timer() { reset(); }

  // False for a default-constructed or moved-from handle.
  [[nodiscard]] bool valid() const noexcept { return state_ != nullptr; }

  // Ends the timer; true if this call did (see above). False on an empty handle too.
  bool cancel() noexcept { return state_ != nullptr && state_->cancel(); }

 private:
  friend struct detail::timer_access;
  explicit timer(detail::periodic_state* state) noexcept : state_(state) {}
  void reset() noexcept {
    if (state_ != nullptr) state_->release();
    state_ = nullptr;
  }

  detail::periodic_state* state_ = nullptr;
};

namespace detail {
struct timer_access {
  // Takes over the caller's reference.
  static timer make(periodic_state* state) noexcept { return timer(state); }
  static periodic_state* state(const timer& t) noexcept { return t.state_; }
};
}  // namespace detail

}  // namespace tidepool

#pragma once
// submit_after / submit_at / go_every, written once for pool and subpool, beside
// detail::submitter's submit / try_submit / go. The derived class provides
//     detail::submit_status submit_node_at(detail::task_node*, std::chrono::steady_clock::time_point);
//     detail::submit_status start_periodic(detail::periodic_state*, std::chrono::nanoseconds period);
// which accept (the timer queue takes the node, or a reference to the state) or refuse (the
// node destroyed and the refusal counted; the periodic state left to the caller).

#include <chrono>       // for std::chrono::duration, std::chrono::steady_clock, std::chrono::nanoseconds
#include <stdexcept>    // for std::invalid_argument
#include <type_traits>  // for std::decay_t
#include <utility>      // for std::forward

#include "tidepool/detail/periodic_state.hpp"
#include "tidepool/detail/saturating_duration.hpp"
#include "tidepool/detail/submitter.hpp"
#include "tidepool/detail/task_node.hpp"
#include "tidepool/task.hpp"
#include "tidepool/timer.hpp"

namespace tidepool::detail {

// now + delay, saturated: a delay past the clock's range means "never before the end of time";
// one of zero or less means now (as soon as possible, after what is already due).
[[nodiscard]] inline std::chrono::steady_clock::time_point due_after(std::chrono::nanoseconds delay) noexcept {
  using clock = std::chrono::steady_clock;
  const clock::time_point now = clock::now();
  if (delay <= std::chrono::nanoseconds::zero()) return now;
  if (delay > clock::time_point::max() - now) return clock::time_point::max();
  return now + delay;
}

template <class Derived>
class timer_submitter {
 public:
  // Submits f to run no earlier than `delay` from now (a delay <= 0: as soon as possible). Until
  // then the task is counted `scheduled`; when due it enters the queues like a submission. Throws
  // pool_stopped when refused (counted as dropped). stop() cancels it if it is not due yet.
  template <class Rep, class Period, class F>
  [[nodiscard]] auto submit_after(std::chrono::duration<Rep, Period> delay, F&& f) -> task<task_result_t<F>> {
    return submit_at(due_after(saturating_nanoseconds(delay)), std::forward<F>(f));
  }

  // Like submit_after, at a point of the steady clock (one in the past: as soon as possible).
  template <class F>
  [[nodiscard]] auto submit_at(std::chrono::steady_clock::time_point when, F&& f) -> task<task_result_t<F>> {
    return submit_at_with(when, std::forward<F>(f), nullptr);
  }

  // The same with a priority (for when it is due), a deadline and a stop token (submit_options.hpp):
  // a stop requested or a deadline passed before the task starts skips it, as for submit().
  template <class Rep, class Period, class F>
  [[nodiscard]] auto submit_after(std::chrono::duration<Rep, Period> delay, F&& f, const submit_options& options)
      -> task<task_result_t<F>> {
    return submit_at_with(due_after(saturating_nanoseconds(delay)), std::forward<F>(f), &options);
  }
  template <class F>
  [[nodiscard]] auto submit_at(std::chrono::steady_clock::time_point when, F&& f, const submit_options& options)
      -> task<task_result_t<F>> {
    return submit_at_with(when, std::forward<F>(f), &options);
  }

  // Runs f every `period`, the first time one period from now (see tidepool/timer.hpp). Throws
  // std::invalid_argument for a period <= 0, pool_stopped if stopped (then f is destroyed).
  template <class Rep, class Period, class F>
  [[nodiscard]] timer go_every(std::chrono::duration<Rep, Period> period, F&& f) {
    const std::chrono::nanoseconds every = saturating_nanoseconds(period);
    if (every <= std::chrono::nanoseconds::zero()) {
      throw std::invalid_argument("tidepool: go_every: the period must be longer than zero");
    }
    timer handle = timer_access::make(periodic_state::make(std::forward<F>(f)));
    throw_if_refused(self().start_periodic(timer_access::state(handle), every));
    return handle;
  }

 private:
  Derived& self() noexcept { return static_cast<Derived&>(*this); }

  template <class F>
  auto submit_at_with(std::chrono::steady_clock::time_point when, F&& f, const submit_options* options)
      -> task<task_result_t<F>> {
    using result = task_result_t<F>;
    task_node* n = make_task_node<std::decay_t<F>, result>(std::forward<F>(f), task_kind::with_handle, options);
    throw_if_refused(self().submit_node_at(n, when));
    return task_access<result>::make(n);
  }
};

}  // namespace tidepool::detail

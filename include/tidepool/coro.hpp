#pragma once
// C++20 coroutines on a tidepool::pool: co_task, schedule, spawn, awaiting a task<T>, when_all,
// sync_wait.
//
//   tidepool::co_task<long> fib(int n) {
//     if (n < 2) co_return n;
//     auto [a, b] = co_await tidepool::when_all(fib(n - 1), fib(n - 2));  // a, b may run in parallel
//     co_return a + b;
//   }
//   long f = tidepool::sync_wait(pool, fib(30));            // from a thread outside the pool
//   tidepool::task<long> t = tidepool::spawn(pool, fib(30));  // an ordinary task handle
//
// co_task<T>: a lazy coroutine. It starts when awaited (on the awaiting thread, at once),
// spawned or passed to when_all / sync_wait; `co_await` on it returns its T (moved out) or
// rethrows its exception. T may be void (co_task<> is co_task<void>) or move-only, not a reference. A co_task is started at
// most once; destroying one never started destroys its frame (and what its parameters hold).
//
// Where coroutines run: on the pool's workers, never blocking one. What suspends a coroutine
// (a child not finished yet, a task<T> not ready, schedule) hands its worker back to the
// pool, which runs other work meanwhile; the coroutine is resumed later as an internal job:
// never counted in metrics, never refused. Only spawn() counts, as one task per coroutine.
//
// No retention: a co_task's frame, with its locals and parameters, is destroyed before the
// coroutine awaiting it resumes, and before a spawned task's completion is observable (ready(),
// get(), wait() return, an awaiter resumes). A lambda coroutine's captures are not in its frame
// but in the lambda object, which must outlive the co_task (pass what it needs as parameters).
//
// Stack: resumption goes by symmetric transfer, so nested co_awaits of any depth and when_all
// recursion (fib, UTS) run in bounded native stack (where a transfer is a call, g++ at -O0 or
// with a sanitizer, a thread past half its stack hands the next transfer to its worker's loop:
// detail/coro_jobs.hpp). Frames are on the heap, recycled per thread
// (detail/coro_frame_allocator.hpp: no call to the global heap once warm); forking (when_all)
// and awaiting a task<T> allocate nothing else.
//
// Threads: a coroutine may resume on another thread than the one it suspended on. clang 14 (not
// g++) may keep a thread-local's address, or pthread_self() (std::this_thread::get_id()), from
// before a co_await and use it after (fixed in LLVM 16): in a coroutine compiled by clang 14, read
// thread-locals through a function of another translation unit.
//
// Errors in the usual places: a pool that refuses a submission throws as submit() does; awaiting
// a task<T> throws what get() would (task_cancelled, task_expired, the task's exception).

#include <array>        // for std::array
#include <coroutine>    // for std::coroutine_handle
#include <cstddef>      // for std::size_t
#include <cstdint>      // for std::uint32_t, UINT32_MAX
#include <exception>    // for std::exception_ptr, std::make_exception_ptr, std::rethrow_exception
#include <string>       // for std::string
#include <tuple>        // for std::tuple, std::get, std::apply
#include <type_traits>  // for std::conditional_t, std::is_void_v, std::is_reference_v
#include <utility>      // for std::exchange, std::index_sequence, std::move
#include <variant>      // for std::monostate
#include <vector>       // for std::vector

#include "tidepool/detail/coro_jobs.hpp"
#include "tidepool/detail/coro_promise.hpp"
#include "tidepool/detail/coro_spawn.hpp"
#include "tidepool/detail/coro_task_awaiter.hpp"
#include "tidepool/detail/coro_when_all.hpp"
#include "tidepool/detail/submitter.hpp"
#include "tidepool/detail/task_completion.hpp"
#include "tidepool/errors.hpp"
#include "tidepool/pool.hpp"
#include "tidepool/subpool.hpp"
#include "tidepool/task.hpp"

namespace tidepool {

namespace detail {
template <class T>
struct co_task_access;
}

// co_task<> is co_task<void> (the default is on the first declaration, detail/coro_promise.hpp).
template <class T>
class co_task {
  static_assert(!std::is_reference_v<T>, "tidepool: a co_task cannot return a reference; return a pointer or a std::reference_wrapper");

 public:
  using promise_type = detail::co_promise<T>;
  using value_type = T;

  co_task() noexcept = default;
  co_task(co_task&& other) noexcept : frame_(std::exchange(other.frame_, {})) {}
  co_task& operator=(co_task&& other) noexcept {
    if (this != &other) {
      reset();
      frame_ = std::exchange(other.frame_, {});
    }
    return *this;
  }
  co_task(const co_task&) = delete;
  co_task& operator=(const co_task&) = delete;
  ~co_task() { reset(); }

  // False for a default-constructed or moved-from co_task, and once it was started.
  [[nodiscard]] bool valid() const noexcept { return static_cast<bool>(frame_); }

  // Starts the coroutine on this thread, at once; the awaiter resumes when it has finished.
  class awaiter;
  awaiter operator co_await() &&;
  awaiter operator co_await() &;

 private:
  friend promise_type;
  friend struct detail::co_task_access<T>;
  explicit co_task(std::coroutine_handle<promise_type> frame) noexcept : frame_(frame) {}
  void reset() noexcept {
    if (frame_) std::exchange(frame_, {}).destroy();
  }

  std::coroutine_handle<promise_type> frame_;
};

namespace detail {

template <class T>
co_task<T> co_promise<T>::get_return_object() noexcept {
  return co_task<T>(std::coroutine_handle<co_promise<T>>::from_promise(*this));
}
inline co_task<void> co_promise<void>::get_return_object() noexcept {
  return co_task<void>(std::coroutine_handle<co_promise<void>>::from_promise(*this));
}

// Out of line and cold: keeps the throw out of the fork path (when_all runs once per fork).
[[noreturn]] void throw_empty_co_task(const char* who);

template <class T>
struct co_task_access {
  // The unstarted frame, which the caller now owns; throws if there is none.
  static std::coroutine_handle<co_promise<T>> release(co_task<T>& t, const char* who) {
    if (!t.valid()) throw_empty_co_task(who);
    return std::exchange(t.frame_, {});
  }
  // The same for a co_task known to be valid.
  static std::coroutine_handle<co_promise<T>> release_valid(co_task<T>& t) noexcept { return std::exchange(t.frame_, {}); }
};

}  // namespace detail

template <class T>
class co_task<T>::awaiter {
 public:
  explicit awaiter(std::coroutine_handle<promise_type> child) noexcept : child_(child) {}
  awaiter(const awaiter&) = delete;
  awaiter& operator=(const awaiter&) = delete;
  ~awaiter() {
    if (child_) child_.destroy();  // never started
  }

  [[nodiscard]] bool await_ready() const noexcept { return false; }
  std::coroutine_handle<> await_suspend(std::coroutine_handle<> parent) noexcept {
    promise_type& child = child_.promise();
    child.continuation = parent;
    child.slot = &result_;
    return detail::transfer_to(std::exchange(child_, {}));
  }
  T await_resume() { return result_.take(); }

 private:
  std::coroutine_handle<promise_type> child_;
  detail::result_slot<T> result_;
};

template <class T>
auto co_task<T>::operator co_await() && -> awaiter {
  return awaiter(detail::co_task_access<T>::release(*this, "co_await"));
}
template <class T>
auto co_task<T>::operator co_await() & -> awaiter {
  return awaiter(detail::co_task_access<T>::release(*this, "co_await"));
}

// ---- schedule ----------------------------------------------------------------------------------

// co_await schedule(pool): the coroutine continues on one of the pool's workers (like
// asio::post to an executor): a job on this worker's own deque if it is one of the pool's
// workers (an idle worker may steal it), else on the pool's global queue. Never counted in the
// metrics. On a stopped pool, nothing is posted and the co_await throws pool_stopped.
class pool_scheduler {
 public:
  explicit pool_scheduler(pool& p) noexcept : pool_(p) {}
  [[nodiscard]] bool await_ready() const noexcept { return false; }
  bool await_suspend(std::coroutine_handle<> suspended) {
    if (detail::post_resumption(pool_, suspended)) return true;  // may have resumed already: no more touching *this
    refused_ = true;
    return false;
  }
  void await_resume() const {
    if (refused_) throw pool_stopped();
  }

 private:
  pool& pool_;
  bool refused_ = false;
};

// co_await schedule(subpool): the coroutine continues inside a task of the subpool (submitted
// with go()), so it counts against the subpool's concurrency limit and in its metrics until it
// next suspends or finishes. The co_await throws what go() throws when the subpool refuses
// (pool_stopped; queue_full on a full non-blocking subpool or from a worker), and pool_stopped
// if the task was skipped (the pool's stop token fired before it started); in that last case
// the coroutine continues on the thread that skipped the task.
namespace detail {
// The go() of a subpool_scheduler in progress on this thread (lib/coro.cpp keeps the innermost
// in a thread-local, out of line: see coro_frame_allocator.hpp on clang and thread-locals).
struct subpool_submission {
  const void* scheduler;
  subpool_submission* outer = nullptr;
  bool skipped = false;
};
void subpool_submission_begin(subpool_submission& s) noexcept;
void subpool_submission_end(subpool_submission& s) noexcept;
// Marks, and returns true for, the submission of `scheduler` in progress on this thread, if any.
[[nodiscard]] bool subpool_submission_skipped(const void* scheduler) noexcept;
}  // namespace detail

class subpool_scheduler {
 public:
  explicit subpool_scheduler(subpool& s) noexcept : subpool_(s) {}
  [[nodiscard]] bool await_ready() const noexcept { return false; }
  bool await_suspend(std::coroutine_handle<> suspended) {
    detail::subpool_submission probe{this};
    detail::subpool_submission_begin(probe);
    try {
      subpool_.go(resumer{suspended, this});
    } catch (...) {
      detail::subpool_submission_end(probe);
      refusal_ = std::current_exception();
      return false;
    }
    detail::subpool_submission_end(probe);
    if (!probe.skipped) return true;  // may have resumed already: no more touching *this
    refusal_ = std::make_exception_ptr(pool_stopped());
    return false;
  }
  void await_resume() const {
    if (refusal_) std::rethrow_exception(refusal_);
  }

 private:
  struct resumer {
    std::coroutine_handle<> suspended;
    subpool_scheduler* scheduler;
    bool done = false;

    resumer(std::coroutine_handle<> s, subpool_scheduler* owner) noexcept : suspended(s), scheduler(owner) {}
    resumer(resumer&& other) noexcept
        : suspended(other.suspended), scheduler(other.scheduler), done(std::exchange(other.done, true)) {}
    resumer& operator=(resumer&&) = delete;
    void operator()() {
      done = true;
      suspended.resume();
    }
    ~resumer() {
      if (!done) scheduler->skipped(suspended);
    }
  };

  // Destroyed unrun: refused or skipped inside our own go() (the submitter continues the
  // coroutine and throws), or skipped later on another thread (which continues it here).
  void skipped(std::coroutine_handle<> suspended) noexcept {
    if (detail::subpool_submission_skipped(this)) return;
    refusal_ = std::make_exception_ptr(pool_stopped());
    suspended.resume();
  }

  subpool& subpool_;
  std::exception_ptr refusal_;
};

[[nodiscard]] inline pool_scheduler schedule(pool& p) noexcept { return pool_scheduler(p); }
[[nodiscard]] inline subpool_scheduler schedule(subpool& s) noexcept { return subpool_scheduler(s); }

// ---- when_all ----------------------------------------------------------------------------------

// What a child's result becomes in when_all's tuple: void is std::monostate, so that every
// child keeps its position.
template <class T>
using when_all_value_t = std::conditional_t<std::is_void_v<T>, std::monostate, T>;

template <class... T>
class when_all_awaitable {
 public:
  // Every co_task valid (when_all checks); they are empty afterwards.
  explicit when_all_awaitable(co_task<T>&... tasks) noexcept : children_{detail::co_task_access<T>::release_valid(tasks)...} {}
  when_all_awaitable(const when_all_awaitable&) = delete;
  when_all_awaitable& operator=(const when_all_awaitable&) = delete;
  ~when_all_awaitable() {
    if (!started_) {
      for (std::coroutine_handle<> child : children_) child.destroy();
    }
  }

  [[nodiscard]] bool await_ready() const noexcept { return sizeof...(T) == 0; }
  std::coroutine_handle<> await_suspend(std::coroutine_handle<> parent) noexcept {
    started_ = true;
    prepare(std::index_sequence_for<T...>{});
    return detail::start_when_all(children_.data(), jobs_.data(), sizeof...(T), join_, parent);
  }
  std::tuple<when_all_value_t<T>...> await_resume() { return collect(std::index_sequence_for<T...>{}); }

 private:
  template <std::size_t... I>
  void prepare(std::index_sequence<I...>) noexcept {
    (point_at_join(std::coroutine_handle<detail::co_promise<T>>::from_address(children_[I].address()).promise(),
                   std::get<I>(results_)),
     ...);
  }
  template <class U>
  void point_at_join(detail::co_promise<U>& child, detail::result_slot<U>& result) noexcept {
    child.join = &join_;
    child.slot = &result;
  }
  template <std::size_t... I>
  std::tuple<when_all_value_t<T>...> collect(std::index_sequence<I...>) {
    // The first exception in argument order, once all have finished.
    (rethrow_if_failed(std::get<I>(results_)), ...);
    return std::tuple<when_all_value_t<T>...>(take(std::get<I>(results_))...);
  }
  template <class U>
  static void rethrow_if_failed(const detail::result_slot<U>& r) {
    if (r.error) std::rethrow_exception(r.error);
  }
  template <class U>
  static when_all_value_t<U> take(detail::result_slot<U>& r) {
    if constexpr (std::is_void_v<U>) {
      return std::monostate{};
    } else {
      return std::move(*r.value);
    }
  }

  // The children's frames, in argument order (each of the promise type of its co_task): owned
  // here until started.
  std::array<std::coroutine_handle<>, sizeof...(T)> children_;
  std::array<detail::child_job_slot, sizeof...(T)> jobs_;
  std::tuple<detail::result_slot<T>...> results_;
  detail::join_counter join_;
  bool started_ = false;
};

template <class T>
class when_all_vector_awaitable {
 public:
  explicit when_all_vector_awaitable(std::vector<co_task<T>> tasks)
      : tasks_(std::move(tasks)), children_(tasks_.size()), jobs_(tasks_.size()), results_(tasks_.size()) {
    if (tasks_.size() > UINT32_MAX) throw error("tidepool: when_all: more than 2^32 - 1 co_tasks");
    for (const co_task<T>& t : tasks_) {
      if (!t.valid()) detail::throw_empty_co_task("when_all");
    }
  }
  when_all_vector_awaitable(const when_all_vector_awaitable&) = delete;
  when_all_vector_awaitable& operator=(const when_all_vector_awaitable&) = delete;

  [[nodiscard]] bool await_ready() const noexcept { return tasks_.empty(); }
  std::coroutine_handle<> await_suspend(std::coroutine_handle<> parent) {
    for (std::size_t i = 0; i < tasks_.size(); ++i) {
      std::coroutine_handle<detail::co_promise<T>> child = detail::co_task_access<T>::release(tasks_[i], "when_all");
      child.promise().join = &join_;
      child.promise().slot = &results_[i];
      children_[i] = child;
    }
    return detail::start_when_all(children_.data(), jobs_.data(), static_cast<std::uint32_t>(children_.size()), join_, parent);
  }
  // The results in argument order (void for co_task<void>), or the first exception in argument
  // order, once all have finished.
  auto await_resume() {
    for (const detail::result_slot<T>& r : results_) {
      if (r.error) std::rethrow_exception(r.error);
    }
    if constexpr (!std::is_void_v<T>) {
      std::vector<T> values;
      values.reserve(results_.size());
      for (detail::result_slot<T>& r : results_) values.push_back(std::move(*r.value));
      return values;
    }
  }

 private:
  std::vector<co_task<T>> tasks_;  // owns the frames until they start
  std::vector<std::coroutine_handle<>> children_;
  std::vector<detail::child_job_slot> jobs_;
  std::vector<detail::result_slot<T>> results_;
  detail::join_counter join_;
};

// co_await when_all(a, b, ...): starts every co_task, the first on this thread at once and the
// others as jobs that idle workers may steal (while the worker has work waiting for thieves
// already, it keeps them, and offers them when a thief took that work or the coroutine
// suspends: detail/coro_when_all.hpp), and resumes when all have finished (on the worker
// that finished last), with their results in argument order: std::tuple<T...>, a void co_task
// giving std::monostate in its place. If any threw, the exception of the earliest argument
// that threw is rethrown, after all have finished (the others' results are dropped).
// Throws tidepool::error at once if a co_task is empty. Lazy: nothing starts before co_await.
template <class... T>
[[nodiscard]] when_all_awaitable<T...> when_all(co_task<T>... tasks) {
  if (!(tasks.valid() && ...)) detail::throw_empty_co_task("when_all");
  return when_all_awaitable<T...>(tasks...);
}

// The same over a vector: co_await gives std::vector<T> in the vector's order (nothing for
// co_task<void>). An empty vector completes at once.
template <class T>
[[nodiscard]] when_all_vector_awaitable<T> when_all(std::vector<co_task<T>> tasks) {
  return when_all_vector_awaitable<T>(std::move(tasks));
}

// ---- spawn, task<T> awaiting, sync_wait ----------------------------------------------------

// Starts the co_task on the pool as one task, counted like a submit() (submitted, running until
// the coroutine has finished, then succeeded or failed); the handle is the ordinary task<T>:
// get / wait / ready / cancel. The coroutine's frame, and everything it holds, is destroyed
// before the task's completion is observable. cancel() before it starts destroys the unstarted
// co_task (get() throws task_cancelled). Refused as submit() is: throws pool_stopped, or
// queue_full on a full non-blocking pool (a full blocking pool blocks, as submit() does).
// A bounded pool's slot is held while the coroutine is suspended too.
template <class T>
[[nodiscard]] task<T> spawn(pool& p, co_task<T> coroutine) {
  if (!coroutine.valid()) detail::throw_empty_co_task("spawn");
  detail::task_node* const node = detail::make_spawn_node(std::move(coroutine));
  detail::throw_if_refused(detail::submit_node(p, node, /*may_block=*/true));
  return detail::task_access<T>::make(node);
}

// co_await on a task<T> (e.g. `int v = co_await pool.submit(f);`): suspends the coroutine — no
// thread blocks, no worker helps — and resumes it on a worker of the task's pool once the task
// has finished, even if the coroutine was running on another pool's worker before. Returns
// what get() returns and throws what get() throws: the task's exception, task_cancelled,
// task_expired (and tidepool::error for an empty handle). Consumes the handle, as get() does.
// The task's pool must outlive the await (a pool destroyed meanwhile might never resume it).
template <class T>
[[nodiscard]] detail::task_awaiter<T> operator co_await(task<T>&& awaited) noexcept {
  return detail::task_awaiter<T>(std::move(awaited));
}
template <class T>
[[nodiscard]] detail::task_awaiter<T> operator co_await(task<T>& awaited) noexcept {
  return detail::task_awaiter<T>(std::move(awaited));
}

// Runs the co_task on the pool (as spawn() does) and blocks the calling thread until it has
// finished; returns its value or rethrows its exception. For threads outside every pool: on a
// worker (of any pool) it throws tidepool::error, since blocking a worker on a coroutine could
// deadlock the pool (co_await the co_task there). Refused as spawn() is.
template <class T>
T sync_wait(pool& p, co_task<T> coroutine) {
  if (detail::on_a_worker()) {
    throw error("tidepool: sync_wait called on a worker thread, which must not block: co_await the co_task instead");
  }
  return spawn(p, std::move(coroutine)).get();
}

}  // namespace tidepool

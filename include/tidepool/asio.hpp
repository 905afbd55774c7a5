#pragma once
// Boost.Asio on a tidepool pool: pool::executor_type, so that Asio handlers and coroutines run on
// the pool's workers, and async_get, so that Asio code can await a tidepool::task<T>.
//
//   tidepool::pool pool;
//   boost::asio::post(pool.get_executor(), [] { /* on a worker */ });
//   boost::asio::co_spawn(pool.get_executor(), session(), boost::asio::detached);
//   // inside an Asio coroutine, without blocking a thread:
//   int v = co_await tidepool::async_get(pool.submit([] { return 42; }), boost::asio::use_awaitable);
//
// The executor meets Boost 1.74's two executor models: the standard one (execution::executor:
// execute, equality, and the properties below) and the Networking TS one (context(),
// on_work_started / on_work_finished, dispatch / post / defer), so asio::post, dispatch, defer,
// co_spawn, bind_executor, make_strand and any_io_executor all take it.
//
// What a handler is to the pool: a fire-and-forget task (like pool.go(f)), counted in the
// metrics as `submitted` and then `succeeded`, or `failed` if it throws (the exception goes to
// pool_options::on_unhandled_exception, as for go()). Submission follows the pool's rules:
//   * a stopped pool refuses: execute (and so post, dispatch, defer) throws pool_stopped, the
//     handler is destroyed unrun, and the refusal is counted `dropped`. Nothing is dropped
//     silently (asio::thread_pool, once stopped, leaves handlers unrun without a word). Stop
//     with stop_and_wait(), which first waits for tracked work (below), not with stop(), while
//     coroutines on the pool are still waiting for something.
//   * a full bounded pool: a thread outside the pool waits for room (queue_full instead if the
//     pool is non_blocking), as go() does; a worker of the pool gets queue_full (it cannot wait
//     for its own pool, and running the handler at once would break blocking.never). Give an
//     Asio executor an unbounded pool (the default) unless you handle that.
//   * blocking.possibly (the default, and asio::dispatch): on a worker of this pool the handler
//     runs at once, inside execute(), and an exception it throws goes to execute()'s caller;
//     elsewhere it is submitted. blocking.never (asio::post, asio::defer): always submitted.
//   * relationship.fork / continuation: accepted and reported; both go to the pool's FIFO
//     queue (a continuation is not kept on the worker, unlike asio::thread_pool's).
//   * outstanding_work.tracked (executor_work_guard, on_work_started; co_spawn holds it for the
//     life of a coroutine): the pool promises to accept the handlers of tracked work, so
//     pool::stop_and_wait() and ~pool, called outside the pool's workers, first wait until no
//     work is tracked, and only then stop. A coroutine suspended on another context (a socket
//     of an io_context) therefore keeps stop_and_wait() waiting until it ends: end it (or
//     destroy that context, which destroys the coroutine) before stopping the pool.
//     Untracked executors promise nothing.
//   * allocator: the handler lives in the pool's own task node (from a per-thread cache), so an
//     associated allocator is not used; query(execution::allocator) is std::allocator<void>.
//   * context: one asio::execution_context per pool, made by the first get_executor() and
//     destroyed by ~pool after the workers end (its services, e.g. strands, then destroy the
//     handlers they still hold). Making it allocates: if that fails, get_executor() (noexcept,
//     as Asio's) ends the program. A pool that gave out executors must not be destroyed from one
//     of its own handlers: the context would go while that handler still runs.
//
// Equality: two executors are equal when they belong to the same pool and have the same
// blocking, relationship and outstanding_work properties. A strand (asio::make_strand) on the
// pool runs its handlers one at a time, in order, on the pool's workers.
//
// Clang 14 with Boost 1.74: Asio enables co_await for clang only with the Coroutines TS
// (<experimental/coroutine>); this header turns on the C++20 coroutines instead, before it
// includes Asio. Include it before any other Asio header in a translation unit that uses Asio's
// coroutines with clang. (Boost 1.74's awaitable.hpp also needs <utility>, included here.)

#include <utility>  // for std::move, std::exchange (Boost 1.74's awaitable.hpp uses it unincluded)

#if defined(__clang__) && defined(__cpp_impl_coroutine) && !defined(BOOST_ASIO_HAS_CO_AWAIT) && \
    !defined(BOOST_ASIO_DISABLE_CO_AWAIT) && __has_include(<coroutine>)
#define BOOST_ASIO_HAS_CO_AWAIT 1
#define BOOST_ASIO_HAS_STD_COROUTINE 1
#endif

#include <boost/asio/associated_executor.hpp>  // for boost::asio::get_associated_executor
#include <boost/asio/async_result.hpp>         // for boost::asio::async_initiate
#include <boost/asio/execution.hpp>            // for boost::asio::execution properties
#include <boost/asio/execution_context.hpp>    // for boost::asio::execution_context
#include <boost/asio/executor_work_guard.hpp>  // for boost::asio::executor_work_guard
#include <boost/asio/post.hpp>                 // for boost::asio::post
#include <boost/asio/prefer.hpp>               // for boost::asio::prefer
#include <boost/asio/system_executor.hpp>      // for boost::asio::system_executor

#include <atomic>              // for std::atomic
#include <condition_variable>  // for std::condition_variable
#include <cstddef>             // for std::size_t
#include <exception>           // for std::exception_ptr, std::current_exception
#include <functional>          // for std::invoke
#include <memory>              // for std::allocator, std::unique_ptr
#include <mutex>               // for std::mutex, std::lock_guard, std::unique_lock
#include <type_traits>         // for std::decay_t, std::is_void_v, std::enable_if_t

#include "tidepool/detail/asio_attachment.hpp"
#include "tidepool/detail/task_completion.hpp"
#include "tidepool/detail/task_node.hpp"
#include "tidepool/pool.hpp"
#include "tidepool/task.hpp"

namespace tidepool {

namespace detail {

// The pool's Asio execution context, and its count of tracked work.
class pool_asio_context final : public asio_attachment, public boost::asio::execution_context {
 public:
  explicit pool_asio_context(pool& owner) : owner_(owner) {}
  ~pool_asio_context() override {
    // The services first (execution_context's destructor would do it too, later): the handlers
    // they destroy may hold tracked executors, which count down here.
    shutdown();
    destroy();
  }

  [[nodiscard]] pool& owner() const noexcept { return owner_; }

  // relaxed: starting work publishes nothing. (Work started after a waiter saw zero is too late:
  // the pool stops, as asio::thread_pool's join() would.)
  void work_started() noexcept { tracked_.fetch_add(1, std::memory_order_relaxed); }
  void work_finished() noexcept {
    // Down to 1 without the lock; the step to zero takes it, so that a waiter that saw zero (and
    // may destroy the pool, and this) is sure the notifying thread is done with us.
    // release: what the work did happens-before the waiter's acquire load of zero (each
    // decrement is a read-modify-write, so the last one continues every earlier one's release
    // sequence).
    std::size_t n = tracked_.load(std::memory_order_relaxed);
    while (n > 1) {
      if (tracked_.compare_exchange_weak(n, n - 1, std::memory_order_release, std::memory_order_relaxed)) return;
    }
    std::lock_guard lock(mutex_);
    if (tracked_.fetch_sub(1, std::memory_order_release) == 1) no_tracked_work_.notify_all();
  }
  void wait_until_no_tracked_work() noexcept override {
    std::unique_lock lock(mutex_);
    no_tracked_work_.wait(lock, [this] { return tracked_.load(std::memory_order_acquire) == 0; });
  }

 private:
  pool& owner_;
  std::atomic<std::size_t> tracked_{0};
  std::mutex mutex_;
  std::condition_variable no_tracked_work_;
};

}  // namespace detail

class pool::executor_type {
  static constexpr unsigned blocking_never = 1;
  static constexpr unsigned relationship_continuation = 2;
  static constexpr unsigned outstanding_work_tracked = 4;

 public:
  executor_type(const executor_type& other) noexcept : context_(other.context_), bits_(other.bits_) { start_work(); }
  executor_type(executor_type&& other) noexcept : context_(other.context_), bits_(std::exchange(other.bits_, other.bits_ & ~outstanding_work_tracked)) {}
  executor_type& operator=(const executor_type& other) noexcept {
    if (this != &other) {
      executor_type copy(other);
      swap(copy);
    }
    return *this;
  }
  executor_type& operator=(executor_type&& other) noexcept {
    if (this != &other) {
      executor_type taken(std::move(other));
      swap(taken);
    }
    return *this;
  }
  ~executor_type() { finish_work(); }

  // ---- The standard executor model (boost::asio::execution).
  template <class Function>
  void execute(Function&& f) const {
    pool& p = context_->owner();
    const bool on_worker = detail::on_worker_of(detail::pool_access::core(p));
    if ((bits_ & blocking_never) == 0 && on_worker) {
      std::decay_t<Function> local(std::forward<Function>(f));
      std::invoke(std::move(local));
      return;
    }
    using callable = std::decay_t<Function>;
    detail::task_node* node = detail::make_task_node<callable, void>(std::forward<Function>(f), detail::task_kind::fire_and_forget);
    detail::throw_if_refused(detail::submit_node(p, node, /*may_block=*/!on_worker));
  }

  [[nodiscard]] boost::asio::execution_context& query(boost::asio::execution::context_t) const noexcept { return *context_; }
  static constexpr boost::asio::execution::mapping_t query(boost::asio::execution::mapping_t) noexcept {
    return boost::asio::execution::mapping.thread;
  }
  [[nodiscard]] std::size_t query(boost::asio::execution::occupancy_t) const noexcept { return context_->owner().workers(); }
  [[nodiscard]] boost::asio::execution::blocking_t query(boost::asio::execution::blocking_t) const noexcept {
    return (bits_ & blocking_never) != 0 ? boost::asio::execution::blocking_t(boost::asio::execution::blocking.never)
                                         : boost::asio::execution::blocking_t(boost::asio::execution::blocking.possibly);
  }
  [[nodiscard]] boost::asio::execution::relationship_t query(boost::asio::execution::relationship_t) const noexcept {
    return (bits_ & relationship_continuation) != 0
               ? boost::asio::execution::relationship_t(boost::asio::execution::relationship.continuation)
               : boost::asio::execution::relationship_t(boost::asio::execution::relationship.fork);
  }
  [[nodiscard]] boost::asio::execution::outstanding_work_t query(boost::asio::execution::outstanding_work_t) const noexcept {
    return (bits_ & outstanding_work_tracked) != 0
               ? boost::asio::execution::outstanding_work_t(boost::asio::execution::outstanding_work.tracked)
               : boost::asio::execution::outstanding_work_t(boost::asio::execution::outstanding_work.untracked);
  }
  template <class ProtoAllocator>
  [[nodiscard]] std::allocator<void> query(boost::asio::execution::allocator_t<ProtoAllocator>) const noexcept {
    return {};
  }

  [[nodiscard]] executor_type require(boost::asio::execution::blocking_t::never_t) const noexcept {
    return with(bits_ | blocking_never);
  }
  [[nodiscard]] executor_type require(boost::asio::execution::blocking_t::possibly_t) const noexcept {
    return with(bits_ & ~blocking_never);
  }
  [[nodiscard]] executor_type require(boost::asio::execution::relationship_t::fork_t) const noexcept {
    return with(bits_ & ~relationship_continuation);
  }
  [[nodiscard]] executor_type require(boost::asio::execution::relationship_t::continuation_t) const noexcept {
    return with(bits_ | relationship_continuation);
  }
  [[nodiscard]] executor_type require(boost::asio::execution::outstanding_work_t::tracked_t) const noexcept {
    return with(bits_ | outstanding_work_tracked);
  }
  [[nodiscard]] executor_type require(boost::asio::execution::outstanding_work_t::untracked_t) const noexcept {
    return with(bits_ & ~outstanding_work_tracked);
  }

  friend bool operator==(const executor_type& a, const executor_type& b) noexcept {
    return a.context_ == b.context_ && a.bits_ == b.bits_;
  }
  friend bool operator!=(const executor_type& a, const executor_type& b) noexcept { return !(a == b); }

  // ---- The Networking TS model.
  [[nodiscard]] boost::asio::execution_context& context() const noexcept { return *context_; }
  void on_work_started() const noexcept { context_->work_started(); }
  void on_work_finished() const noexcept { context_->work_finished(); }
  // At once if called on one of the pool's workers, else as post.
  template <class Function, class ProtoAllocator>
  void dispatch(Function&& f, const ProtoAllocator&) const {
    require(boost::asio::execution::blocking.possibly).execute(std::forward<Function>(f));
  }
  template <class Function, class ProtoAllocator>
  void post(Function&& f, const ProtoAllocator&) const {
    require(boost::asio::execution::blocking.never).execute(std::forward<Function>(f));
  }
  template <class Function, class ProtoAllocator>
  void defer(Function&& f, const ProtoAllocator&) const {
    require(boost::asio::execution::blocking.never).execute(std::forward<Function>(f));
  }

  // True on one of the pool's workers (where dispatch runs a handler at once).
  [[nodiscard]] bool running_in_this_thread() const noexcept {
    return detail::on_worker_of(detail::pool_access::core(context_->owner()));
  }

 private:
  friend class pool;
  executor_type(detail::pool_asio_context* context, unsigned bits) noexcept : context_(context), bits_(bits) { start_work(); }

  [[nodiscard]] executor_type with(unsigned bits) const noexcept { return executor_type(context_, bits); }
  void start_work() const noexcept {
    if ((bits_ & outstanding_work_tracked) != 0) context_->work_started();
  }
  void finish_work() const noexcept {
    if ((bits_ & outstanding_work_tracked) != 0) context_->work_finished();
  }
  void swap(executor_type& other) noexcept {
    std::swap(context_, other.context_);
    std::swap(bits_, other.bits_);
  }

  detail::pool_asio_context* context_;
  unsigned bits_;
};

inline pool::executor_type pool::get_executor() noexcept {
  detail::asio_attachment* attached = asio_.load(std::memory_order_acquire);
  if (attached == nullptr) {
    auto* made = new detail::pool_asio_context(*this);
    // acq_rel: a thread that loads the pointer sees the context fully built; the loser of a race
    // deletes its own and takes the winner's.
    if (asio_.compare_exchange_strong(attached, made, std::memory_order_acq_rel, std::memory_order_acquire)) {
      attached = made;
    } else {
      delete made;
    }
  }
  return executor_type(static_cast<detail::pool_asio_context*>(attached), 0);
}

namespace detail {

// Work tracked on a handler's executor while its operation is pending, as Asio's own operations
// keep it: prefer(ex, outstanding_work.tracked) for a standard executor, a work guard for a
// Networking TS one.
template <class Executor, class = void>
class tracked_work {
 public:
  explicit tracked_work(const Executor& ex) : executor_(boost::asio::prefer(ex, boost::asio::execution::outstanding_work.tracked)) {}
  [[nodiscard]] const auto& executor() const noexcept { return executor_; }

 private:
  // decay: prefer returns the executor itself, as a reference, when it cannot track work.
  std::decay_t<typename boost::asio::prefer_result<Executor, boost::asio::execution::outstanding_work_t::tracked_t>::type>
      executor_;
};
template <class Executor>
class tracked_work<Executor, std::enable_if_t<!boost::asio::execution::is_executor<Executor>::value>> {
 public:
  explicit tracked_work(const Executor& ex) : guard_(ex) {}
  [[nodiscard]] Executor executor() const noexcept { return guard_.get_executor(); }

 private:
  boost::asio::executor_work_guard<Executor> guard_;
};

// One async_get: waits (as a continuation of the task, no thread blocked) for the task's outcome,
// then posts the completion to the handler's associated executor.
template <class T, class Handler>
class get_operation final : public task_continuation {
  using handler_executor = boost::asio::associated_executor_t<Handler, boost::asio::system_executor>;

 public:
  get_operation(Handler handler, task<T> t)
      : handler_(std::move(handler)),
        task_(std::move(t)),
        work_(boost::asio::get_associated_executor(handler_, boost::asio::system_executor())) {
    on_finished = &finished;
  }

  // Takes ownership of `op`: from here on it ends in the handler being called, or, if the
  // handler's executor refuses the completion, in the handler being destroyed uncalled.
  static void start(std::unique_ptr<get_operation> op) {
    task_node* node = task_access<T>::node(op->task_);
    if (add_continuation(node, op.get())) {
      static_cast<void>(op.release());  // finished() owns it now
      return;
    }
    complete_on_executor(std::move(op));  // it had its outcome already
  }

 private:
  static void finished(task_continuation* self) noexcept {
    std::unique_ptr<get_operation> op(static_cast<get_operation*>(self));
    try {
      complete_on_executor(std::move(op));
    } catch (...) {
      // The executor refused (a stopped pool, say) and destroyed the completion, and with it
      // the handler: Asio's way of telling (a use_future future gets broken_promise, a
      // use_awaitable coroutine is destroyed), as when a context is shut down.
    }
  }

  static void complete_on_executor(std::unique_ptr<get_operation> op) {
    auto ex = op->work_.executor();
    boost::asio::post(ex, [op = std::move(op)]() mutable { deliver(std::move(op)); });
  }

  // On the handler's executor: takes the outcome, frees the operation, then calls the handler
  // (so that the handler may start another operation in the memory just freed).
  static void deliver(std::unique_ptr<get_operation> op) {
    Handler handler(std::move(op->handler_));
    task<T> finished_task(std::move(op->task_));
    auto work = std::move(op->work_);
    op.reset();
    std::exception_ptr error;
    if constexpr (std::is_void_v<T>) {
      try {
        finished_task.get();
      } catch (...) {
        error = std::current_exception();
      }
      std::move(handler)(error);
    } else {
      T value{};
      try {
        value = finished_task.get();
      } catch (...) {
        error = std::current_exception();
      }
      std::move(handler)(error, std::move(value));
    }
    static_cast<void>(work);  // released after the handler ran, as Asio's operations do
  }

  Handler handler_;
  task<T> task_;
  tracked_work<handler_executor> work_;
};

template <class T>
struct get_signature {
  using type = void(std::exception_ptr, T);
};
template <>
struct get_signature<void> {
  using type = void(std::exception_ptr);
};

struct initiate_get {
  template <class Handler, class T>
  void operator()(Handler&& handler, task<T> t) const {
    if (!t.valid()) throw error("tidepool::async_get: the task handle is empty (default-constructed, moved from, or get() was called)");
    get_operation<T, std::decay_t<Handler>>::start(
        std::make_unique<get_operation<T, std::decay_t<Handler>>>(std::forward<Handler>(handler), std::move(t)));
  }
};

}  // namespace detail

// Awaits a task from Asio code, without blocking a thread: when the task finishes (on whichever
// thread publishes its outcome: a worker of its pool, or a thread in cancel() or stop()), the
// completion handler is posted to its associated executor (asio::system_executor if it has
// none) with the signature
//     void(std::exception_ptr, T)      (void(std::exception_ptr) for task<void>)
// as co_spawn's: a null exception_ptr and the value, or what get() would throw — the task's own
// exception, task_cancelled, task_expired — and a value-initialised T (so T must be default
// constructible). With use_awaitable, `T v = co_await async_get(t, use_awaitable)` returns the
// value or rethrows; with use_future, the future holds either.
// The handler's executor holds tracked work until the handler has run. If that executor refuses
// the completion (a stopped tidepool pool: pool_stopped), the handler is destroyed uncalled, as
// Asio does with the handlers of a context that is shut down.
// Throws tidepool::error at once for an empty handle. The operation takes the handle over: to be
// able to cancel the task while it is awaited, submit it with a stop token (submit_options) and
// request stop on it; a task so skipped completes the handler with task_cancelled.
template <class T, class CompletionToken>
auto async_get(task<T> t, CompletionToken&& token) {
  return boost::asio::async_initiate<CompletionToken, typename detail::get_signature<T>::type>(detail::initiate_get{}, token, std::move(t));
}

}  // namespace tidepool

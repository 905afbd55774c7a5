#pragma once
// tidepool::pool — a work-stealing thread pool with Go pond's submission model.
//
//   tidepool::pool pool;                          // hardware_concurrency() workers
//   auto answer = pool.submit([] { return 42; }); // task<int>
//   pool.go([] { log("fire and forget"); });
//   int v = answer.get();
//   pool.stop_and_wait();                         // or let the destructor do it
//
// Where a task goes: submit(), try_submit() and go(), from any thread (one of the pool's own
// tasks included), onto the pool's FIFO global queue. Workers take from it in batches of
// 32 / workers (at least 1) into an inbox that they, and idle workers, empty oldest first. Only
// fork-join work stays local: task_group tasks submitted from inside a task, parallel_invoke /
// parallel_for / parallel_reduce jobs, and the jobs that run a subpool's tasks submitted from
// inside a task go onto the worker's own deque (newest first for it, oldest first for thieves).
// Idle workers steal, then park. A worker that keeps taking a few tasks at a time from a stream
// submitted outside the pool waits 2 µs before its next take, so that the producer gets a batch
// ahead instead of meeting the worker on the same cache lines at every submission; a task of
// such a stream may start up to 2 µs later for it (lib/worker.cpp, pace_global_take). The other
// way round, a thread outside the pool whose submissions have the global queue at 16,384 tasks
// or more yields its CPU (sched_yield) once every 256 submissions, so that with fewer cores than
// threads the workers it waits for get to run (lib/submission.cpp, yield_if_far_ahead).
//
// Start order: tasks submitted by one thread start in the order they were submitted. On one
// worker exactly; on several, no task starts more than 32 tasks ahead of an earlier one from the
// same thread, apart from tasks another worker has taken and not yet started (its share of a
// batch at most, if the operating system deschedules it in the middle of taking them). Two
// exceptions: a task that a worker submits to its own full pool runs at once (see
// queue_capacity), and a shrinking resize() sends the surplus workers' waiting tasks to the back.
//
// Priorities (submit_options::priority: low, normal, high): among waiting submitted tasks, a
// higher level starts first, and the start order above holds within each level. There is one
// global queue per level, and an inbox holds one level's batch; a worker serves the highest level
// in sight (the global queues and every inbox), thieves prefer inboxes of that level, and a
// running task is never preempted. No level waits forever: a worker counts the starts of higher
// levels while a lower one has tasks waiting, and after 16 such starts (normal) or 32 (low) its
// next start is from that level. So a waiting low task with k low tasks ahead of it starts within
// 33 × (k + 1) starts of any one worker, whatever the stream of high tasks. Fork-join work is not
// prioritised. A pool that only ever sees normal tasks pays one load per decision for this. The
// exception, as for start order: a batch a worker takes from a level's queue is in neither until
// it lands in that worker's inbox; if the operating system deschedules the worker in between,
// the others, finding no task of that level to take, start lower ones meanwhile, one at a time.
//
// Starvation bound: every accepted task starts. A worker counts its starts (each task it takes
// from a queue, in its loop or inside a helping wait; what a task runs on its own stack —
// fork-join jobs it takes back, tasks run at once — is part of that task), and on every 61st it
// takes the oldest waiting submitted task before its own fork-join work. So a task that was
// k-th in the global queue starts within 61 × (k + 1) × (W × (b − 1) + 1) starts of any one
// worker (W workers, b = max(1, 32 / W)), and once in a worker's inbox within 61 × (b − 1)
// starts of that worker, whatever the workers spawn: in time, that many runs of the longest
// tasks. A worker nested more than 256 helping waits deep runs only its own deque (and the task
// it waits for) until it unwinds. lib/worker.cpp has the proof.
//
// Accounting: a submission is either refused — pool_stopped or queue_full is thrown (try_submit
// returns no task) and it counts as `dropped`, never `submitted` — or accepted, and then it is run
// (succeeded / failed) or, if skipped before it starts, reported to its handle as cancelled.
// Nothing accepted is ever silently lost: see pool_metrics.
//
// No retention: a task's callable and all its captures are destroyed before its completion is
// observable by anyone, and no structure of the pool refers to a finished task (but for the two
// cases task.hpp describes: an empty node left in a queue slot by a deeply nested waiter or by
// cancel()).
// A callable, its captures and its result must have noexcept destructors (checked at compile time).
//
// fork(): a pool's workers exist only in the process that created them. In a child process, a
// pool created before the fork refuses every submission with tidepool::used_after_fork
// (try_submit returns no task; counted `dropped`), stop_and_wait() and the destructor return at
// once without running anything, and resize() throws used_after_fork. Tasks accepted before the
// fork are the parent's: their handles never complete in the child. default_pool() in a child
// is a new pool.

#include <atomic>       // for std::atomic
#include <chrono>       // for std::chrono::steady_clock, std::chrono::nanoseconds
#include <cstddef>      // for std::size_t
#include <cstdint>      // for SIZE_MAX, std::uint32_t
#include <exception>    // for std::exception_ptr
#include <functional>   // for std::function
#include <memory>       // for std::shared_ptr
#include <stop_token>   // for std::stop_token
#include <string>       // for std::string
#include <vector>       // for std::vector (cpus)

#include "tidepool/detail/asio_attachment.hpp"
#include "tidepool/detail/submitter.hpp"
#include "tidepool/detail/timer_submitter.hpp"
#include "tidepool/detail/task_node.hpp"
#include "tidepool/errors.hpp"
#include "tidepool/metrics.hpp"
#include "tidepool/task.hpp"

namespace tidepool {

inline constexpr std::size_t unbounded = SIZE_MAX;
inline constexpr std::uint32_t default_latency_sample_every = 64;  // see pool_options

struct pool_options {
  // 0 → std::thread::hardware_concurrency() (at least 1).
  std::size_t workers = 0;
  // How many accepted tasks may wait to start. 0 → no queue: a submission is accepted only when
  // a worker can take it at once. Precisely: at most workers + queue_capacity tasks are accepted
  // and unfinished at any time.
  std::size_t queue_capacity = unbounded;
  // When the queue is full: false → submit() and go() block until there is room; true → they
  // throw queue_full. try_submit() never blocks. A worker never blocks on its own pool: when a
  // task submits to a full pool, the new task runs at once on the submitting worker (counted in
  // `inline_runs`) unless the pool is non-blocking, in which case queue_full is thrown.
  bool non_blocking = false;
  // Receives the exceptions of go() tasks. Called on the worker; what it throws is discarded.
  // Default: the exception is only counted (`failed`).
  std::function<void(std::exception_ptr)> on_unhandled_exception;
  // Worker threads are named "<name>-<index>" (truncated to the system's limit).
  std::string name = "tidepool";
  // Requesting stop on this token stops the pool for good: new submissions are refused, tasks
  // not yet started are skipped (counted `cancelled`, their handles throw task_cancelled), and
  // running tasks finish. stop_and_wait() then returns once the running ones have.
  std::stop_token stop_token;
  // Every Nth task submitted by a thread has its queue wait and run time recorded in the
  // metrics' histograms (1: every task; 0: none). Timing a task reads the clock three times
  // (≈ 30 ns each here); at 1 in 64 that is under 2 ns per task on average.
  std::uint32_t latency_sample_every = default_latency_sample_every;
  // Each worker thread's stack, in bytes. 0 → the system's default (on Linux the stack limit,
  // usually 8 MiB). Raise it for tasks with large locals or results: a task's result is built on
  // the worker's stack before it is moved into the task, so returning a 16 MiB object needs more
  // than 16 MiB. Below PTHREAD_STACK_MIN (16 KiB here) → std::invalid_argument.
  std::size_t stack_size = 0;
  // Pins worker i to CPU cpus[i % cpus.size()] (pthread_setaffinity_np, at the worker's start,
  // also for workers a resize() adds). Empty: no pinning. A CPU this process may not run on
  // (outside its affinity mask, or not a CPU at all) → std::invalid_argument from the constructor.
  std::vector<int> cpus;
  // Run on the worker thread itself, with the worker's index: on_worker_start after pinning and
  // before the worker takes its first task (this_worker_index() is that index there);
  // on_worker_stop after its last task, once the thread has left the pool (this_worker_index()
  // is empty there), as the thread exits (at shutdown, or when resize() retires it; a worker
  // restarted by a later grow runs on_worker_start again, after its on_worker_stop finished).
  // Every on_worker_stop has returned when ~pool returns (unless ~pool runs inside one of the
  // pool's own tasks, whose worker finishes later). If one throws, the exception goes to
  // on_unhandled_exception (or is dropped when that is empty) and the worker carries on: a
  // worker is never lost to a hook, so every accepted task still runs.
  std::function<void(std::size_t worker)> on_worker_start;
  std::function<void(std::size_t worker)> on_worker_stop;
};

class task_group;

namespace detail {
class pool_core;
struct pool_access;
}  // namespace detail

// submit(f), try_submit(f) and go(f) come from detail::submitter (detail/submitter.hpp);
// submit_after(d, f), submit_at(t, f) and go_every(period, f) from detail::timer_submitter
// (detail/timer_submitter.hpp). Timers: one min-heap per pool, served by one timer thread that
// the first timer starts and that sleeps until the earliest is due. A due task enters the queues
// like a submission; with a bounded queue it takes its slot then, and while the queue is full it
// stays in the timer queue (counted `scheduled`, retried every millisecond), never dropped.
class pool : public detail::submitter<pool>, public detail::timer_submitter<pool> {
 public:
  explicit pool(pool_options options = {});
  // stop_and_wait(), then ends the workers. Safe to call from one of the pool's own tasks: that
  // worker is left to finish its task and exit by itself.
  ~pool();

  pool(const pool&) = delete;
  pool& operator=(const pool&) = delete;
  pool(pool&&) = delete;
  pool& operator=(pool&&) = delete;

  // Refuses new tasks from now on; every task already accepted still runs, but for delayed tasks
  // not yet due (submit_after / submit_at), which are cancelled (their handles throw
  // task_cancelled), and periodic timers (go_every), which end. Does not wait.
  void stop();
  // stop(), then waits until every accepted task has finished.
  // From inside one of the pool's own tasks it cannot wait for everything (the calling task, a
  // task waiting for it, or another task doing the same would never finish): it helps run the
  // queued tasks and returns once none is left waiting to start; tasks running on other workers
  // may still be running. The destructor, from inside a task, then joins the other workers, so
  // it does wait for them: do not destroy a pool from a task that another task is waiting for.
  void stop_and_wait();
  [[nodiscard]] bool stopped() const noexcept;

  [[nodiscard]] pool_metrics metrics() const;
  [[nodiscard]] std::size_t workers() const noexcept;

  // Changes the number of workers (1 to 1024). Growing starts workers at once. Shrinking never
  // interrupts a task: surplus workers finish the task they run, hand their queued tasks to the
  // others and exit the next time they look for work; no task submitted after resize() returned
  // runs on them. Metrics stay exact. With a bounded queue the limit follows: at most workers +
  // queue_capacity unfinished tasks.
  // Throws pool_stopped once the pool is stopped (stop(), stop_and_wait(), its stop token), and
  // std::invalid_argument for 0 or more than 1024. If a thread cannot be created
  // (std::system_error), the workers started before it keep running and workers() counts them.
  void resize(std::size_t workers);

  // Boost.Asio: an executor that runs handlers and coroutines on the pool's workers. Defined in
  // tidepool/asio.hpp (include it to use them), so that this header does not need Asio.
  class executor_type;
  inline executor_type get_executor() noexcept;

 private:
  friend class detail::submitter<pool>;
  friend class detail::timer_submitter<pool>;
  friend class task_group;
  friend class subpool;
  friend struct detail::pool_access;

  // On refusal the node is destroyed here and the refusal counted.
  detail::submit_status submit_node(detail::task_node* node, bool may_block);
  detail::submit_status submit_node_at(detail::task_node* node, std::chrono::steady_clock::time_point when);
  detail::submit_status start_periodic(detail::periodic_state* state, std::chrono::nanoseconds period);

  std::shared_ptr<detail::pool_core> core_;
  // Made by the first get_executor() (tidepool/asio.hpp); deleted by ~pool after the workers end.
  std::atomic<detail::asio_attachment*> asio_{nullptr};
};

namespace detail {
// For tidepool's own internals (fork-join, groups) to reach the scheduler behind a pool.
struct pool_access {
  static pool_core& core(pool& p) noexcept;
};
}  // namespace detail

}  // namespace tidepool

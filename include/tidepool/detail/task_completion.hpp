#pragma once
// What the layers that do not block on a task need from the scheduler: coroutines (coro.hpp)
// and executors (asio.hpp). Three things:
//   * continuations: code run when a task finishes, with no thread waiting for it;
//   * internal jobs: uncounted work run on a pool's workers (a coroutine's resumption);
//   * deferred completion: a counted task whose run only starts work that finishes later (a
//     spawned coroutine that suspends), and that someone completes afterwards.
// Definitions: lib/completion.cpp (continuations, the pool accessors) and lib/worker.cpp
// (complete_deferred, which shares the worker's finishing steps).

#include "tidepool/detail/submitter.hpp"
#include "tidepool/detail/task_node.hpp"

namespace tidepool {
class pool;
}

namespace tidepool::detail {

class pool_core;

// ---- Continuations
struct task_continuation {
  void (*on_finished)(task_continuation* self) noexcept = nullptr;
  // Managed by add_continuation: do not touch.
  task_continuation* next = nullptr;
  const task_node* node = nullptr;
};

// Arranges for c->on_finished(c) to be called exactly once, after `node` has its outcome (an
// acquire load of node->outcome() sees it, and with it the result), on the thread that
// published it: a worker of the task's pool, or a thread in cancel(), stop(), or a pool's
// destructor. Returns false, and never calls it, if the node had its outcome already; true
// means it will be called, and possibly already is, on another thread. Several continuations
// per node are allowed. The caller keeps the node alive (a handle's reference) and `c` in place
// until on_finished has been called. on_finished must be short and must not block: it posts a
// job (post_internal_job) or a handler, typically.
[[nodiscard]] bool add_continuation(task_node* node, task_continuation* c) noexcept;

// The pool whose workers run `node` (a subpool's task: its root pool). Only while the task is
// unfinished, or from its continuation's on_finished: every path that finishes a task runs the
// continuations before it tells the task's owner (a group may then go) that it is released, and
// on a thread that keeps the pool alive meanwhile. Not between a ready() that says finished and
// an add_continuation: the owner of a finished task may be gone.
[[nodiscard]] pool_core& pool_of(const task_node* node) noexcept;
[[nodiscard]] bool on_worker_of(const pool_core& core) noexcept;   // this thread is one of its workers
[[nodiscard]] bool pool_stopping(const pool_core& core) noexcept;  // stop() was called, or its token fired

// ---- Work kept private during a run
// A layer that keeps work on the calling worker thread, offered to nobody yet, while a run goes
// on (when_all's kept jobs, lib/coro.cpp) sets this to the function that offers it. The worker
// clears it and calls it whenever a run of a node returns (pool_core::execute,
// run_if_unstarted), so nothing stays hidden behind a run that suspended or blocked. The
// scheduler knows only this pointer, not the layer that sets it.
using after_run_fn = void (*)() noexcept;
inline constinit thread_local after_run_fn after_this_run = nullptr;

// ---- Internal jobs
// Runs `job` -- a node from make_task_node<F, void>(f, task_kind::internal_job) -- on a worker of
// `core`: from the caller's own deque if the caller is one of its workers (newest first; idle
// workers may steal it; the global queue if that deque is full), else through the pool's global
// FIFO queue. Not run in place (unless the global queue cannot grow), so a resumption does not
// nest in the poster's stack. Never counted in metrics and never refused, also after stop().
// But stop_and_wait() does not wait for internal jobs, so one
// posted after the pool drained may never run: post only work that the pool still counts as
// running, such as the resumption of a spawned coroutine.
// The same for an embedded job: a task_node (or a struct derived from one, holding what the op
// needs) in memory the caller owns, default-constructed, with `ops` set and kind =
// task_kind::embedded_job. The worker calls ops(node, task_op::run) and never touches the node
// again, so the op may end the memory's life. It is never cancelled: the op sees only run.
void post_internal_job(pool_core& core, task_node* job) noexcept;

// ---- Deferred completion
// A node with flag_completes_later (task_node.hpp; set in node->flags after make_task_node, before submitting it) is run
// by a worker as usual, but once its run op returns the worker does not count, publish or
// release it: the task stays `running`, and keeps its slot of a bounded pool, until
// complete_deferred(node) is called, once, from any thread (from inside the run op too), after
// the outcome was put in the node: construct_stored<R>(node, value) and flag_has_result, or
// node->store_error(e), or nothing for a void success. It then counts the task succeeded or
// failed, tells its owner, publishes the outcome (waiters wake, continuations run) and drops the
// scheduler's reference; the caller must not touch the node afterwards unless it holds a
// reference of its own. Skipped or cancelled before it starts, the node goes through
// task_op::cancel as any other.
void complete_deferred(task_node* node) noexcept;

// Submits a node built by the caller to `p`, as pool::submit and try_submit do. On refusal the
// node is destroyed and counted dropped; throw_if_refused(status) throws the usual error.
[[nodiscard]] submit_status submit_node(pool& p, task_node* node, bool may_block);

}  // namespace tidepool::detail

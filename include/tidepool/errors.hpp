#pragma once
// The errors tidepool reports. Each is a tidepool::error, itself a std::runtime_error, so callers
// can catch one kind, all of tidepool's, or everything.

#include <stdexcept>  // for std::runtime_error

namespace tidepool {

struct error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// The pool (or subpool) was stopped: the submission was refused and counted as dropped.
struct pool_stopped : error {
  pool_stopped() : error("tidepool: the pool is stopped and accepts no new tasks") {}
};

// The pool's queue was full and the pool is non-blocking: the submission was refused and counted
// as dropped.
struct queue_full : error {
  queue_full() : error("tidepool: the pool's queue is full") {}
};

// The pool was created before this process was forked from its parent: its workers do not exist
// in this (child) process, so it refuses every submission (counted as dropped). Create a new pool
// in the child; tidepool::default_pool() does so by itself.
struct used_after_fork : error {
  used_after_fork() : error("tidepool: pool used in a child process after fork()") {}
};

// The task was accepted but skipped before it started (its group failed or was stopped, or the
// pool's stop token was triggered, its stop token was, or its handle's cancel() was called). It
// is counted as cancelled.
struct task_cancelled : error {
  task_cancelled() : error("tidepool: the task was cancelled before it started") {}

 protected:
  explicit task_cancelled(const char* what) : error(what) {}
};

// The task was accepted with a deadline (submit_options) and was still waiting to start when
// the deadline came: it was not run, and is counted as expired.
struct task_expired : task_cancelled {
  task_expired() : task_cancelled("tidepool: the task's deadline passed before it started") {}
};

}  // namespace tidepool

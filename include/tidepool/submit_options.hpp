#pragma once
// Per-task options, for the submit / try_submit / go overloads that take them:
//
//   tidepool::submit_options urgent;
//   urgent.priority = tidepool::priority::high;
//   urgent.deadline = std::chrono::steady_clock::now() + 50ms;
//   auto t = pool.submit(fetch, urgent);
//
// (Designated initializers, `{.priority = ...}`, work too, but g++ 12's -Wextra warns about every
// member they leave out: -Wmissing-field-initializers.)
//
// A task submitted without options has none of their cost: its node stays as small as its
// callable allows. Options other than the priority are kept beside the node, in a side
// allocation made at submission (detail/task_node.hpp).

#include <chrono>      // for std::chrono::steady_clock
#include <optional>    // for std::optional
#include <stop_token>  // for std::stop_token

#include "tidepool/priority.hpp"

namespace tidepool {

struct submit_options {
  tidepool::priority priority = tidepool::priority::normal;
  // A task still waiting to start at its deadline is not run: it is counted `expired` and its
  // handle's get() throws task_expired. A running task is never interrupted by its deadline. A
  // deadline already past is accepted: the task expires when a worker reaches it.
  std::optional<std::chrono::steady_clock::time_point> deadline;
  // Stop requested before the task starts: it is not run (counted `cancelled`, its handle throws
  // task_cancelled). After it started: the callable sees the request on the std::stop_token it
  // takes, if it takes one.
  std::stop_token stop_token;
};

}  // namespace tidepool

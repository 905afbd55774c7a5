#pragma once
// For tests of promises whose breach is a hang (a destructor that waits for itself): runs the
// body on a thread of its own and reports whether it returned in time. A body that hangs is left
// behind, detached, so that the test fails instead of stalling the whole suite.

#include <chrono>   // for std::chrono::milliseconds
#include <future>   // for std::promise, std::future_status
#include <memory>   // for std::make_shared
#include <thread>   // for std::thread
#include <utility>  // for std::move

namespace tidepool::testing {

template <class Body>
[[nodiscard]] bool finishes_within(std::chrono::milliseconds limit, Body body) {
  auto returned = std::make_shared<std::promise<void>>();
  auto future = returned->get_future();
  std::thread([returned, body = std::move(body)]() mutable {
    body();
    returned->set_value();
  }).detach();
  return future.wait_for(limit) == std::future_status::ready;
}

}  // namespace tidepool::testing

#pragma once
// What a pool keeps for tidepool/asio.hpp without knowing Asio: the pool owns one, made by its
// first get_executor() (an asio::execution_context and the count of outstanding tracked work,
// defined in tidepool/asio.hpp), and lib/pool.cpp only waits for that work and deletes it.

namespace tidepool::detail {

class asio_attachment {
 public:
  asio_attachment() = default;
  asio_attachment(const asio_attachment&) = delete;
  asio_attachment& operator=(const asio_attachment&) = delete;
  // Called by ~pool after the workers ended: shuts the execution context's services down
  // (destroying the handlers they still hold, e.g. a strand's queue).
  virtual ~asio_attachment() = default;
  // Returns once no executor of the pool tracks outstanding work (outstanding_work.tracked,
  // on_work_started): pool::stop_and_wait() and ~pool call it first, from a non-worker thread.
  virtual void wait_until_no_tracked_work() noexcept = 0;
};

}  // namespace tidepool::detail

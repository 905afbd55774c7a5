// Must not compile: a task whose capture's destructor may throw is refused at compile time
// (detail/task_node.hpp, make_task_node). With -DTIDEPOOL_CONTROL the same program with a
// harmless capture must compile, so the failure is known to come from the check itself.

#include "tidepool/pool.hpp"

namespace {

struct throws_when_destroyed {
  ~throws_when_destroyed() noexcept(false) {}
};

struct harmless {};

}  // namespace

int main() {
  tidepool::pool pool;
#if defined(TIDEPOOL_CONTROL)
  harmless capture;
#else
  throws_when_destroyed capture;
#endif
  pool.go([capture] { static_cast<void>(capture); });
}

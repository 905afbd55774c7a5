// A distributed matrix product, C = A·B with n×n matrices, SUMMA-style (van de Geijn and Watts,
// 1997) over a 2-D grid of MPI ranks, each rank computing its block with tidepool's parallel_for.
// Checks every block against a serial product and the whole against a checksum computed
// independently from the entries' formula; exits 1 on any difference.
//
//   mpirun -np R examples/mpi_matmul [--n N] [--workers W]
//
// Defaults: n = 1024; W as in mpi_uts (the cores the rank is bound to, or its share of the node's
// cores). The R ranks form a rows × columns grid (MPI_Dims_create: 2 → 2×1, 4 → 2×2, 6 → 3×2);
// n must divide evenly by both.
//
// Distribution: each matrix is cut into rows × columns blocks, block (r, c) on the rank at grid
// position (r, c). Nothing is ever gathered: every rank generates its own blocks of A and B from
// the entries' formula. SUMMA then goes through the inner dimension in panels of w columns of A
// (and w rows of B), w chosen so that a panel lies within one block column (row): for each
// panel, the ranks holding it broadcast their part of A's panel along their grid row and of B's
// panel along their grid column, and every rank adds the product of the two panels to its block
// of C. Only the main thread calls MPI (MPI_THREAD_FUNNELED, see mpi_ranks.hpp); it calls
// parallel_for from outside the pool, so it submits the update and waits for it.
//
// The entries are small integers, so every sum is exact in double and the checks compare with ==.

#include <mpi.h>  // the MPI C API (meson defines OMPI_SKIP_MPICXX: no C++ bindings)
#include <tidepool/tidepool.hpp>

#include "mpi_ranks.hpp"

#include <cstddef>  // for std::size_t
#include <cstdio>   // for std::printf
#include <numeric>  // for std::gcd
#include <string>   // for std::to_string
#include <vector>   // for std::vector

namespace {

// The entries, in [-11, 11] and [-9, 9]: n · 11 · 9 < 2^53 for any n that fits in memory.
double a_entry(std::size_t i, std::size_t j) { return static_cast<double>((i * 31 + j * 17) % 23) - 11; }
double b_entry(std::size_t i, std::size_t j) { return static_cast<double>((i * 13 + j * 7) % 19) - 9; }

// A row-major matrix: `columns` entries per row.
struct matrix {
  std::size_t rows;
  std::size_t columns;
  std::vector<double> entries;

  matrix(std::size_t r, std::size_t c) : rows(r), columns(c), entries(r * c, 0.0) {}
  double& at(std::size_t i, std::size_t j) { return entries[i * columns + j]; }
  [[nodiscard]] double at(std::size_t i, std::size_t j) const { return entries[i * columns + j]; }
};

// c's row i += Σ a(i, k) · b's row k, over k in [k_begin, k_end). The loop order (i, k, j) runs
// along rows of b and c, which the compiler vectorises. Shared by the distributed update and the
// serial check, which goes through the same panels, so that both read memory the same way.
void add_product_row(const matrix& a, const matrix& b, matrix& c, std::size_t i, std::size_t k_begin, std::size_t k_end) {
  double* c_row = &c.at(i, 0);
  for (std::size_t k = k_begin; k < k_end; ++k) {
    const double a_ik = a.at(i, k);
    const double* b_row = &b.entries[k * b.columns];
    for (std::size_t j = 0; j < b.columns; ++j) c_row[j] += a_ik * b_row[j];
  }
}

// Where this rank sits, and its communicators along its grid row and column.
struct grid {
  int rows = 0;
  int columns = 0;
  int my_row = 0;
  int my_column = 0;
  MPI_Comm along_row = MPI_COMM_NULL;     // the ranks of my grid row; my rank there is my_column
  MPI_Comm along_column = MPI_COMM_NULL;  // the ranks of my grid column; my rank there is my_row

  grid(int rank, int size) {
    int dims[2] = {0, 0};
    MPI_Dims_create(size, 2, dims);
    rows = dims[0];
    columns = dims[1];
    my_row = rank / columns;
    my_column = rank % columns;
    MPI_Comm_split(MPI_COMM_WORLD, my_row, my_column, &along_row);
    MPI_Comm_split(MPI_COMM_WORLD, my_column, my_row, &along_column);
  }
  ~grid() {
    MPI_Comm_free(&along_row);
    MPI_Comm_free(&along_column);
  }
  grid(const grid&) = delete;
  grid& operator=(const grid&) = delete;
};

constexpr const char* usage = "mpi_matmul [--n N] [--workers W]";

}  // namespace

int main(int argc, char** argv) {
  mpi_examples::mpi_session mpi(argc, argv);
  const mpi_examples::arguments args(argc, argv, {"--n", "--workers"}, usage, mpi.rank());
  const double n_asked = args.number("--n", 1024);
  const double workers_asked = args.number("--workers", 0);
  const grid g(mpi.rank(), mpi.size());
  if (n_asked < 1 || n_asked > 65536 || workers_asked < 0 || workers_asked > 1024) {
    mpi_examples::arguments::fail(mpi.rank(), usage, "out of range: n 1..65536, workers 0..1024");
  }
  const auto n = static_cast<std::size_t>(n_asked);
  if (n % static_cast<std::size_t>(g.rows) != 0 || n % static_cast<std::size_t>(g.columns) != 0) {
    mpi_examples::arguments::fail(mpi.rank(), usage,
                                  "n must divide by the grid's " + std::to_string(g.rows) + " rows and " +
                                      std::to_string(g.columns) + " columns");
  }
  const std::size_t workers = mpi_examples::workers_per_rank(static_cast<std::size_t>(workers_asked));
  tidepool::pool pool(mpi_examples::rank_pool_options(workers, "matmul"));

  // This rank's blocks: rows [row0, row0 + block_rows), columns [column0, column0 + block_columns).
  const std::size_t block_rows = n / static_cast<std::size_t>(g.rows);
  const std::size_t block_columns = n / static_cast<std::size_t>(g.columns);
  const std::size_t row0 = static_cast<std::size_t>(g.my_row) * block_rows;
  const std::size_t column0 = static_cast<std::size_t>(g.my_column) * block_columns;
  matrix a(block_rows, block_columns);
  matrix b(block_rows, block_columns);
  matrix c(block_rows, block_columns);
  for (std::size_t i = 0; i < block_rows; ++i) {
    for (std::size_t j = 0; j < block_columns; ++j) {
      a.at(i, j) = a_entry(row0 + i, column0 + j);
      b.at(i, j) = b_entry(row0 + i, column0 + j);
    }
  }

  // A panel lies within one block column of A and one block row of B, and is at most
  // max_panel wide: then B's panel (max_panel rows) stays in cache while the rows of C go by.
  constexpr std::size_t max_panel = 128;
  const std::size_t fits = std::gcd(block_rows, block_columns);
  std::size_t w = fits < max_panel ? fits : max_panel;
  while (fits % w != 0) --w;
  matrix a_panel(block_rows, w);     // A's rows of my block row, the panel's columns
  matrix b_panel(w, block_columns);  // B's panel rows, the columns of my block column

  MPI_Barrier(MPI_COMM_WORLD);
  const mpi_examples::stopwatch parallel_time;
  for (std::size_t k0 = 0; k0 < n; k0 += w) {
    const int a_owner = static_cast<int>(k0 / block_columns);  // grid column holding A's panel
    const int b_owner = static_cast<int>(k0 / block_rows);     // grid row holding B's panel
    if (g.my_column == a_owner) {
      for (std::size_t i = 0; i < block_rows; ++i) {
        for (std::size_t k = 0; k < w; ++k) a_panel.at(i, k) = a.at(i, k0 % block_columns + k);
      }
    }
    if (g.my_row == b_owner) {
      for (std::size_t k = 0; k < w; ++k) {
        for (std::size_t j = 0; j < block_columns; ++j) b_panel.at(k, j) = b.at(k0 % block_rows + k, j);
      }
    }
    MPI_Bcast(a_panel.entries.data(), static_cast<int>(a_panel.entries.size()), MPI_DOUBLE, a_owner, g.along_row);
    MPI_Bcast(b_panel.entries.data(), static_cast<int>(b_panel.entries.size()), MPI_DOUBLE, b_owner, g.along_column);
    tidepool::parallel_for(pool, std::size_t{0}, block_rows, [&](std::size_t i) { add_product_row(a_panel, b_panel, c, i, 0, w); });
  }
  MPI_Barrier(MPI_COMM_WORLD);
  const double parallel_seconds = parallel_time.wall_seconds();
  const double cpu_seconds = parallel_time.cpu_seconds();
  double cpu_seconds_everywhere = 0;
  MPI_Reduce(&cpu_seconds, &cpu_seconds_everywhere, 1, MPI_DOUBLE, MPI_SUM, 0, MPI_COMM_WORLD);

  // Check 1: my block against the serial product of my rows of A and my columns of B.
  const mpi_examples::stopwatch serial_time;
  matrix my_rows_of_a(block_rows, n);
  matrix my_columns_of_b(n, block_columns);
  for (std::size_t i = 0; i < block_rows; ++i) {
    for (std::size_t k = 0; k < n; ++k) my_rows_of_a.at(i, k) = a_entry(row0 + i, k);
  }
  for (std::size_t k = 0; k < n; ++k) {
    for (std::size_t j = 0; j < block_columns; ++j) my_columns_of_b.at(k, j) = b_entry(k, column0 + j);
  }
  matrix expected(block_rows, block_columns);
  for (std::size_t k0 = 0; k0 < n; k0 += w) {
    for (std::size_t i = 0; i < block_rows; ++i) add_product_row(my_rows_of_a, my_columns_of_b, expected, i, k0, k0 + w);
  }
  const double serial_seconds = serial_time.wall_seconds();
  const double serial_cpu_seconds = serial_time.cpu_seconds();
  long long wrong = 0;
  double block_sum = 0;
  for (std::size_t i = 0; i < c.entries.size(); ++i) {
    wrong += c.entries[i] != expected.entries[i];
    block_sum += c.entries[i];
  }

  // Check 2: the sum of all of C is Σ_k (Σ_i A(i, k)) · (Σ_j B(k, j)), from the formula alone.
  long long wrong_everywhere = 0;
  double sum = 0;
  MPI_Allreduce(&wrong, &wrong_everywhere, 1, MPI_LONG_LONG, MPI_SUM, MPI_COMM_WORLD);
  MPI_Allreduce(&block_sum, &sum, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
  double checksum = 0;
  for (std::size_t k = 0; k < n; ++k) {
    double column_of_a = 0;
    double row_of_b = 0;
    for (std::size_t i = 0; i < n; ++i) column_of_a += a_entry(i, k);
    for (std::size_t j = 0; j < n; ++j) row_of_b += b_entry(k, j);
    checksum += column_of_a * row_of_b;
  }
  const bool right = wrong_everywhere == 0 && sum == checksum;

  if (mpi.rank() == 0) {
    std::printf("matmul n=%zu on a %dx%d grid, panels of %zu: %d ranks x %zu workers: %.1f ms, cpu %.1f ms\n", n,
                g.rows, g.columns, w, mpi.size(), workers, parallel_seconds * 1e3, cpu_seconds_everywhere * 1e3);
    std::printf("serial check of rank 0's block (%zux%zu): %.1f ms, cpu %.1f ms; %lld entries differ; sum %.0f, "
                "checksum %.0f\n",
                block_rows, block_columns, serial_seconds * 1e3, serial_cpu_seconds * 1e3, wrong_everywhere, sum, checksum);
    if (!right) std::printf("WRONG\n");
  }
  return right ? 0 : 1;
}

// fastgd's benchmark driver for LIBMF (fastgd.benchmarks.recommender): reads training and
// held-out ratings written by the benchmark (int32 m, int32 n, int64 nnz, then nnz
// records of int32 row, int32 column, float32 rating: LIBMF's mf_node), trains LIBMF with
// the options given on the command line and lets it print, after every iteration, its
// training and held-out RMSE; the benchmark timestamps those lines as they come.
//
//   libmf_driver TRAIN HELD_OUT K THREADS ITERATIONS ETA L2 [BINS [QUIET]]
#include <cstdio>
#include <cstdlib>
#include <string>

#include "mf.h"

using namespace mf;

static mf_problem read_entries(const char *path)
{
    mf_problem problem;
    FILE *file = std::fopen(path, "rb");
    if (file == nullptr || std::fread(&problem.m, 4, 1, file) != 1
        || std::fread(&problem.n, 4, 1, file) != 1
        || std::fread(&problem.nnz, 8, 1, file) != 1) {
        std::fprintf(stderr, "cannot read %s\n", path);
        std::exit(2);
    }
    problem.R = new mf_node[problem.nnz];
    if (std::fread(problem.R, sizeof(mf_node), problem.nnz, file) != (size_t)problem.nnz) {
        std::fprintf(stderr, "%s is too short\n", path);
        std::exit(2);
    }
    std::fclose(file);
    return problem;
}

int main(int argc, char **argv)
{
    if (argc < 8) {
        std::fprintf(stderr, "usage: %s TRAIN HELD_OUT K THREADS ITERATIONS ETA L2 [BINS "
                             "[QUIET]]\n", argv[0]);
        return 2;
    }
    mf_problem training = read_entries(argv[1]), held_out = read_entries(argv[2]);
    // Every option explicitly: LIBMF's own defaults are not the Python wrapper's.
    mf_parameter param = mf_get_default_param();
    param.fun = P_L2_MFR;
    param.k = std::atoi(argv[3]);
    param.nr_threads = std::atoi(argv[4]);
    param.nr_iters = std::atoi(argv[5]);
    param.eta = (mf_float)std::atof(argv[6]);
    param.lambda_p2 = param.lambda_q2 = (mf_float)std::atof(argv[7]);
    param.lambda_p1 = param.lambda_q1 = 0;
    param.nr_bins = argc > 8 ? std::atoi(argv[8]) : 20;
    param.quiet = argc > 9 && std::atoi(argv[9]) != 0;
    param.do_nmf = false;
    param.copy_data = false;
    mf_model *model = mf_train_with_validation(&training, &held_out, param);
    mf_destroy_model(&model);
    return 0;
}

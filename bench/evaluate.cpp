// kakunin_evaluate [--data DIR] [--cli PATH] [--out FILE] [--from TS] [--learn-days N]
//                  [--work-dir DIR]
//
// Anomaly scoring on a real bot (bench/evaluate.hpp): learns the baseline of a Hummingbot
// market maker's first days, replays the rest with `kakunin replay`, then once per injected
// anomaly; prints a markdown report and writes the figures as JSON (default
// evaluation-results.json). Exit 0 when every goal is met, 3 when one is not, 1 on errors.
// scripts/evaluate builds it and runs it from the repository root.
#include <cstdlib>
#include <fstream>
#include <iostream>

#include "evaluate.hpp"

namespace {

int usage() {
    std::cerr << "usage: kakunin_evaluate [--data DIR] [--cli PATH] [--out FILE] [--from TS] "
                 "[--learn-days N] [--work-dir DIR]\n";
    return 2;
}

}  // namespace

int main(int argc, char** argv) {
    using namespace kakunin;
    evaluation::EvaluationOptions options;
    options.cli = KAKUNIN_CLI_PATH;
    options.log = &std::cerr;
    std::string out = "evaluation-results.json";
    try {
        for (int i = 1; i < argc; ++i) {
            const std::string a = argv[i];
            if (i + 1 >= argc) return usage();
            const std::string v = argv[++i];
            if (a == "--data")
                options.data_dir = v;
            else if (a == "--cli")
                options.cli = v;
            else if (a == "--out")
                out = v;
            else if (a == "--from")
                options.from = v;
            else if (a == "--learn-days")
                options.learn_days = static_cast<unsigned>(std::stoul(v));
            else if (a == "--work-dir")
                options.work_dir = v;
            else
                return usage();
        }
        const evaluation::EvaluationResult r = evaluation::evaluate(options);
        std::cout << evaluation::markdown(r);
        std::ofstream f(out, std::ios::binary | std::ios::trunc);
        f << evaluation::figures_json(r).dump(2) << "\n";
        f.flush();
        if (!f) throw Error(ErrorCategory::io, out + ": cannot write");
        std::cerr << "figures written to " << out << "\n";
        return r.goals_met ? 0 : 3;
    } catch (const std::exception& e) {
        std::cerr << "kakunin_evaluate: " << e.what() << "\n";
        return 1;
    }
}

"""The studies behind docs/RESULTS.md: their statistics, the results they store and the sections they write.

The scripts in benchmarks/ run the studies (training, evaluation) and are thin command lines over this package:

    statistics.py  success-rate intervals: Wilson per task, Student's t over training seeds, pooled differences
    variants.py    the learning study's ablation variants and what each one trains
    results.py     a study's output folder and the run results stored in it, older formats included
    report.py      the markdown sections of RESULTS.md, written between their markers
    plots.py       the learning study's figure (matplotlib)

scipy and matplotlib come with the `studies` extra; they are imported only by the functions that need them.
"""

"""nbgrader configuration for the tinynn course: copy it into the root of an nbgrader course folder
(the folder that holds source/, release/, submitted/, autograded/, feedback/), next to a
`source/<assignment>/` folder per course notebook, e.g. `source/01_tensors_and_dense/01_tensors_and_dense.ipynb`.
See TEACHING.md §4. Tested in CI by tests/test_nbgrader.py with nbgrader 0.9.6."""
c = get_config()  # noqa: F821 (provided by nbgrader when it loads this file)

c.CourseDirectory.course_id = "tinynn"

# The training cells of 06, 07, 08 and 10 take up to a minute or two on a busy 2-core machine
# (nbgrader's default is 30 s per cell, which stops them half-way). 600 s per cell, as in the
# course's own notebook tests; an endless loop in a student's cell is interrupted after it.
c.Execute.timeout = 600

# Several students' notebooks graded at once would start several BLAS thread pools that fight
# for the cores: one BLAS thread per kernel is faster in a shared classroom. Set the variable in
# the shell that runs `nbgrader autograde` (kernels inherit the environment):
#     OPENBLAS_NUM_THREADS=1 nbgrader autograde 01_tensors_and_dense

# The course's hidden tests (### BEGIN HIDDEN TESTS ... ### END HIDDEN TESTS) are removed from the
# release version, as the course's own `python -m tinynn student` does; keep nbgrader's defaults:
c.ClearHiddenTests.begin_test_delimeter = "BEGIN HIDDEN TESTS"
c.ClearHiddenTests.end_test_delimeter = "END HIDDEN TESTS"
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
c.ClearSolutions.text_stub = "YOUR ANSWER HERE"

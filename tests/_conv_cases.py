"""ACCIDENTALLY OVERWRITTEN — the owner must recreate this file.

At 01:23:17 UTC the CUDA-kernels engineer (issue 3) created a file with this name
through an editor "create" command without noticing that the NumPy-conv2d engineer
had created ``tests/_conv_cases.py`` seconds earlier; the original content
(GEOMETRIES, GEOMETRY_IDS, MODES, backend_path, conv_terms, random_array, used by
tests/test_conv2d.py) was lost and no copy exists on disk. The CUDA tests now use
``tests/_cuda_conv_cases.py`` instead. Sorry. Please write your file again.
"""

raise ImportError(
    "tests/_conv_cases.py was accidentally overwritten (see its docstring); its "
    "owner must recreate it"
)

"""advcore is a library: importing all of it must not pull in Streamlit."""

import subprocess
import sys


def test_advcore_imports_no_streamlit():
    code = (
        "import sys, advcore.models, advcore.data, advcore.attacks, advcore.metrics, advcore.experiment, "
        "advcore.datasets, advcore.training, advcore.zoo, advcore.cli; "
        "print('streamlit' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"

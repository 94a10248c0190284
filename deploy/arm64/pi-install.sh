# The install lines of deploy/INSTALL.md's Raspberry Pi OS section, as deploy/check-arm64.sh runs them
# inside the arm64 root (tests/core/test_install_doc.py keeps the two the same). Source in /opt/edge-affectsr/src.
python3 -m venv --system-site-packages /opt/edge-affectsr/venv
/opt/edge-affectsr/venv/bin/pip install -c /opt/edge-affectsr/src/requirements/constraints.txt -e '/opt/edge-affectsr/src[device]'

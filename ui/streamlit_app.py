"""The script `ragtune ui` hands to `streamlit run`; its one argument is the UISettings as JSON."""

import sys

import streamlit as st

from ragtune.core.errors import RagtuneError
from ragtune.ui.app import main
from ragtune.ui.settings import UISettings

try:
    settings = UISettings.from_json(sys.argv[1]) if len(sys.argv) > 1 else UISettings()
except RagtuneError as exc:
    st.error(str(exc))
else:
    main(settings)

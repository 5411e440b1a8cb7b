"""The Streamlit entry script that `ragqa ui` runs: the composition root hands the app its parts,
then the app runs. Streamlit executes this file again on every interaction."""

from app import resources
from app.main import run
from ragqa import wiring

resources.install(wiring)
run()

"""The store, retrieval, prompts and answers. Never imports streamlit; never loads the generator."""

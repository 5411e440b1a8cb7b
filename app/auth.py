"""Sign-in for the UI. Three ways, in this order:
1. OpenID Connect through Streamlit (`st.login`) when `.streamlit/secrets.toml` has an `[auth]`
   section; the identity's e-mail is looked up among the accounts (unknown people read the open
   collections only);
2. the built-in accounts (`ragqa users add`), with a sign-in form, once any account exists;
3. neither: one person on this machine, acting as admin; `ragqa ui` then serves 127.0.0.1 only.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, cast

import streamlit as st

from app import resources
from rag.access import LOCAL_ADMIN, Accounts, Principal
from rag.errors import NotFoundError


def oidc_configured() -> bool:
    try:
        return "auth" in st.secrets
    except Exception:  # noqa: BLE001 - no secrets file at all
        return False


def accounts() -> Accounts:
    return Accounts(resources.store().engine)


def signed_in() -> Principal:
    """Who is using this session; shows the sign-in form and stops the page until someone is."""
    if oidc_configured():
        return _oidc_user()
    if not accounts().any():
        return LOCAL_ADMIN
    who = st.session_state.get("principal")
    if who is None:
        _sign_in_form()
        st.stop()
    return who


def _oidc_user() -> Principal:
    if not st.user.get("is_logged_in", False):  # (a plain key lookup: AppTest has no attribute)
        st.title("ragqa")
        st.button("Sign in", on_click=st.login, type="primary")
        st.stop()
    email = str(st.user.get("email") or st.user.get("sub") or "")
    try:
        return accounts().get(email)
    except NotFoundError:
        # An ID token's groups claim is a list; streamlit types every claim as a scalar.
        groups = cast(Iterable[object], st.user.get("groups") or [])
        return Principal(email, "reader", tuple(str(g) for g in groups))


def _sign_in_form() -> None:
    st.title("Sign in to ragqa")
    with st.form("sign_in"):
        name = st.text_input("Name")
        password = st.text_input("Password", type="password")
        if st.form_submit_button("Sign in", type="primary"):
            who = accounts().verify(name, password)
            if who is None:
                st.error("Wrong name or password.")
            else:
                from rag.audit import record

                record(resources.store().engine, who.name, "login")
                st.session_state.principal = who
                st.rerun()


def sidebar_identity(who: Principal) -> None:
    with st.sidebar:
        if who is LOCAL_ADMIN:
            st.caption("No sign-in configured: this UI is served on this machine only (127.0.0.1).")
            return
        st.caption(f"Signed in as **{who.name}** ({who.role})")
        if st.button("Sign out", key="sign_out"):
            if oidc_configured():
                st.logout()
            st.session_state.pop("principal", None)
            st.session_state.pop("conversation", None)
            st.rerun()


def readable(who: Principal) -> tuple[str, ...] | None:
    return accounts().readable(who)


def current() -> Any:
    """The principal main.py established for this run."""
    return st.session_state.get("_who", LOCAL_ADMIN)

from tests.conftest import login


def test_each_role_can_sign_in_and_see_home(client_as):
    for role in ("admin", "clinician", "staff"):
        c = client_as(role)
        assert c.get("/").status_code == 200


def test_sign_in_with_wrong_password_fails(client, make_user, username_of):
    name = username_of(make_user("staff"))
    response = login(client, name, "wrong password entirely")
    assert response.status_code == 200
    assert "Invalid username or password." in response.get_data(as_text=True)

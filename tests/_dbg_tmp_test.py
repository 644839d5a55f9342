import re
from tests.test_webshop import *  # noqa
from tests.test_webshop import _items_form

def test_dbg(app, services):
    client = app.test_client()
    assert find_order(client, "F1002", "2000").status_code == 302
    form = {**_items_form(client), "refund_method": "money_back", "quantity_1": "1", "reason_1": "defective"}
    r = client.post(f"/{FIETS}/retour/indienen", data=form)
    print(r.status_code, re.sub(r"\s+", " ", r.get_data(as_text=True))[-3000:])
    assert 0

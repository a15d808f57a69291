"""The test shop: a Flask app written against Flask-MAB's API, with the one
import changed to mab.flask. Used by the test client tests and, through
wsgi files, under gunicorn."""
import os

from flask import Blueprint, Flask, jsonify, request

from mab.flask import (BanditMiddleware, EpsilonGreedyBandit, ThompsonBandit, choose_arm,
                       reward_and_redirect, reward_endpt)

shop = Blueprint("shop", __name__, url_prefix="/shop")


@shop.route("/item")
@choose_arm("color")
def item(color):
    return jsonify(color=color)


@shop.route("/buy")
@reward_endpt("color", 1.0)
def buy():
    return "thanks"


mab_ext = BanditMiddleware()  # one extension object, many apps (app factory)


def create_app(instance_path, **settings):
    app = Flask("shop", instance_path=instance_path)
    app.config.update(settings)
    mab_ext.init_app(app)
    if not app.config.get("MAB_CONFIG"):
        color = EpsilonGreedyBandit(0.3)
        color.add_arm("green", "#00FF00")
        color.add_arm("red", {"hex": "#FF0000", "name": "red"})
        app.add_bandit("color", color)
        txt = ThompsonBandit()
        txt.add_arm("casual", "Hey dude, wanna buy me?")
        txt.add_arm("neutral", "Add to cart")
        app.add_bandit("txt", txt)

    @app.route("/")
    @choose_arm("color")
    @choose_arm("txt")
    def home(color, txt):
        response = jsonify(color=color, txt=txt)
        response.headers["X-Worker"] = str(os.getpid())
        return response

    @app.route("/plain")
    def plain():
        return "no experiment here"

    @app.route("/buy")
    @reward_endpt("color", 1.0)
    @reward_endpt("txt", 1.0)
    def buy():
        response = app.make_response("bought")
        response.headers["X-Worker"] = str(os.getpid())
        return response

    @app.route("/r")
    def go():
        return reward_and_redirect("color", request.args.get("to", "/"))

    app.register_blueprint(shop)
    return app

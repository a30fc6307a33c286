// Package names makes Docker-style container names: an adjective and a
// famous scientist's or engineer's surname, "focused_hopper".
package names

import (
	"math/rand/v2"
)

var adjectives = []string{
	"admiring", "amazing", "awesome", "blissful", "bold", "brave", "busy", "charming",
	"clever", "compassionate", "competent", "confident", "cool", "dazzling", "determined",
	"eager", "ecstatic", "elegant", "epic", "exciting", "focused", "friendly", "gallant",
	"gifted", "goofy", "gracious", "happy", "hopeful", "inspiring", "jolly", "keen",
	"kind", "laughing", "loving", "lucid", "magical", "modest", "nice", "nifty",
	"nostalgic", "objective", "optimistic", "peaceful", "pensive", "practical", "priceless",
	"quirky", "relaxed", "serene", "sharp", "stoic", "tender", "trusting", "upbeat",
	"vibrant", "vigilant", "wizardly", "wonderful", "youthful", "zealous",
}

var surnames = []string{
	"albattani", "allen", "babbage", "banach", "bardeen", "bell", "bhabha", "bohr",
	"brattain", "cerf", "curie", "darwin", "dijkstra", "einstein", "euclid", "euler",
	"faraday", "fermat", "fermi", "feynman", "franklin", "galileo", "gauss", "goldberg",
	"goodall", "hamilton", "hawking", "heisenberg", "hodgkin", "hopper", "hypatia",
	"johnson", "kepler", "knuth", "lamport", "leakey", "liskov", "lovelace", "mayer",
	"mcclintock", "meitner", "mendel", "newton", "noether", "pascal", "pasteur",
	"perlman", "ritchie", "shannon", "sinoussi", "tesla", "thompson", "torvalds",
	"turing", "villani", "wilson", "wozniak", "wright", "yalow", "zhukovsky",
}

// Random returns a random name. After a collision, callers pass the retry
// count: from 1 on, a digit is appended, as Docker does.
func Random(retry int) string {
	name := adjectives[rand.IntN(len(adjectives))] + "_" + surnames[rand.IntN(len(surnames))]
	if retry > 0 {
		name += string(rune('0' + rand.IntN(10)))
	}
	return name
}
